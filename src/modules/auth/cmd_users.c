/*
 * cmd_users.c - the auth module's subcommand `keel users create-admin
 * --email E [--name N]`: creates the first administrator (issue 4). The
 * password is read from standard input: prompted twice without echo on a
 * terminal, else the first line (so scripts pipe it in; it never appears
 * in argv, the environment or a log). It must meet the password policy.
 * Exit codes: 0 created, 1 failure (the email is taken, database error),
 * 64 usage, 78 bad configuration.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "keel/cmd.h"
#include "keel/db.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/migrate.h"
#include "keel/module.h"
#include "keel/uuid.h"

#include "auth_int.h"

#define PW_BUF (KEEL_PASSWORD_MAX_BYTES + 2)

static void users_help(FILE *f)
{
    fprintf(f, "Usage: keel users create-admin --email EMAIL [--name NAME] [OPTIONS]\n\n"
               "Creates an administrator. The password is read from standard input (asked\n"
               "twice, without echo, on a terminal; else the first line). Takes the options\n"
               "of 'keel serve'; KEEL_DATABASE_URL selects the database.\n");
}

/* Reads one line into buf without its newline; false on EOF or overflow. */
static bool read_line(const char *prompt, char *buf, size_t cap)
{
    struct termios old, quiet;
    bool tty = isatty(STDIN_FILENO), ok;
    size_t n;

    if (tty) {
        fprintf(stderr, "%s", prompt);
        fflush(stderr);
        tcgetattr(STDIN_FILENO, &old);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    ok = fgets(buf, (int)cap, stdin) != NULL;
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (!ok)
        return false;
    n = strlen(buf);
    if (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    else if (n == cap - 1)
        return false; /* longer than any valid password */
    if (n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';
    return true;
}

/* Reads the new administrator's password into pw (twice on a terminal)
 * and checks it against the policy. Returns KEEL_EXIT_OK, or the exit code
 * after saying why. */
static int read_password(char pw[PW_BUF])
{
    char again[PW_BUF];
    const char *why;

    if (!read_line("Password: ", pw, PW_BUF)) {
        fprintf(stderr, "keel users: no password on standard input\n");
        return KEEL_EXIT_FAILURE;
    }
    if (isatty(STDIN_FILENO) &&
        (!read_line("Password again: ", again, sizeof(again)) || strcmp(pw, again) != 0)) {
        sodium_memzero(pw, PW_BUF);
        sodium_memzero(again, sizeof(again));
        fprintf(stderr, "keel users: the passwords differ\n");
        return KEEL_EXIT_FAILURE;
    }
    sodium_memzero(again, sizeof(again));
    if (keel_password_check_policy(pw, strlen(pw), &why) < 0) {
        sodium_memzero(pw, PW_BUF);
        fprintf(stderr, "keel users: the password %s\n", why); /* "must be ..." */
        return KEEL_EXIT_FAILURE;
    }
    return KEEL_EXIT_OK;
}

/* Fills u as a new administrator named name, with pw's hash at the
 * configured cost. Returns KEEL_EXIT_OK or KEEL_EXIT_FAILURE (said why). */
static int
new_admin(const struct keel_config *cfg, const char *name, const char *pw, struct user_row *u)
{
    struct keel_password_params params;
    keel_status rc;

    params.memlimit = (size_t)cfg->password_memory_kib * 1024;
    params.opslimit = cfg->password_iterations;
    rc = keel_password_hash(pw, strlen(pw), &params, u->password_hash);
    if (rc < 0) {
        fprintf(stderr, "keel users: cannot hash the password (%s)\n", keel_strerror(rc));
        return KEEL_EXIT_FAILURE;
    }
    keel_uuid_v7(u->id);
    snprintf(u->name, sizeof(u->name), "%s", name);
    strcpy(u->role, "admin");
    u->created_us = u->updated_us = keel_wall_ms() * 1000;
    return KEEL_EXIT_OK;
}

static keel_status insert(struct keel_db_conn *c, void *arg)
{
    return auth_repo_user_insert(c, arg);
}

/* Inserts u. Returns KEEL_EXIT_OK or KEEL_EXIT_FAILURE (said why). */
static int store_admin(const struct keel_config *cfg, struct user_row *u)
{
    struct keel_db *db = NULL;
    keel_status rc;

    rc = keel_db_open(cfg, &db);
    if (rc < 0) {
        fprintf(stderr, "keel users: cannot open the database (%s)\n", keel_strerror(rc));
        return KEEL_EXIT_FAILURE;
    }
    /* As `keel serve`: development applies pending migrations itself. */
    if (cfg->env == KEEL_ENV_DEVELOPMENT)
        rc = keel_migrate_up(db, NULL);
    if (rc == KEEL_OK)
        rc = keel_db_transaction(db, NULL, insert, u);
    keel_db_close(db);
    if (rc == KEEL_E_CONFLICT) {
        fprintf(stderr, "keel users: a user with this email exists already\n");
        return KEEL_EXIT_FAILURE;
    }
    if (rc < 0) {
        fprintf(stderr,
                "keel users: cannot create the user (%s; is the schema migrated? "
                "run 'keel migrate up')\n",
                keel_strerror(rc));
        return KEEL_EXIT_FAILURE;
    }
    return KEEL_EXIT_OK;
}

/* Logs the creation and prints {"id", "email", "role"} on standard output. */
static void report_admin(const struct user_row *u)
{
    struct keel_json j;
    struct keel_buf out;
    char uid[17];

    keel_log_hash_user_id(u->id, uid);
    keel_log(KEEL_LOG_INFO, "admin created", KEEL_LF_STR("user_id", uid));
    keel_buf_init(&out, 4096);
    keel_json_begin(&j, &out);
    keel_json_obj_open(&j);
    keel_json_key(&j, "id");
    keel_json_str(&j, u->id);
    keel_json_key(&j, "email");
    keel_json_str(&j, u->email);
    keel_json_key(&j, "role");
    keel_json_str(&j, "admin");
    keel_json_obj_close(&j);
    if (keel_json_end(&j) == KEEL_OK)
        printf("%s\n", out.data);
    keel_buf_free(&out);
}

static int create_admin(const struct keel_config *cfg, const char *email, const char *name)
{
    struct user_row u = {0};
    char pw[PW_BUF];
    int code;

    if (!auth_normalize_email(email, u.email)) {
        fprintf(stderr, "keel users: --email must be an email address\n");
        return KEEL_EXIT_USAGE;
    }
    if (strlen(name) == 0 || strlen(name) >= sizeof(u.name)) {
        fprintf(stderr, "keel users: --name must be 1 to %d characters\n", AUTH_NAME_MAX);
        return KEEL_EXIT_USAGE;
    }
    code = read_password(pw);
    if (code != KEEL_EXIT_OK)
        return code;
    code = new_admin(cfg, name, pw, &u);
    sodium_memzero(pw, sizeof(pw));
    if (code == KEEL_EXIT_OK)
        code = store_admin(cfg, &u);
    if (code == KEEL_EXIT_OK)
        report_admin(&u);
    return code;
}

static int run(int argc, char **argv)
{
    struct keel_config_extra extra[] = {
        {.flag = "--help", .help = "show this help"},
        {.flag = "-h", .help = "show this help"},
        {.flag = "--email", .has_value = true, .help = "the admin's email"},
        {.flag = "--name", .has_value = true, .help = "the admin's name (default Admin)"},
    };
    struct keel_config cfg = {0};
    const char *action = argc > 0 ? argv[0] : NULL;
    bool proceed;
    int code;

    if (action && (strcmp(action, "--help") == 0 || strcmp(action, "-h") == 0)) {
        users_help(stdout);
        return KEEL_EXIT_OK;
    }
    if (!action || strcmp(action, "create-admin") != 0) {
        if (action)
            fprintf(stderr, "keel users: unknown action '%s'\n\n", action);
        users_help(stderr);
        return KEEL_EXIT_USAGE;
    }
    code = keel_cmd_start(&cfg, argc - 1, argv + 1, extra, KEEL_ARRAY_LEN(extra), users_help,
                          &proceed);
    if (!proceed)
        return code;
    if (!extra[2].set || !extra[2].value) {
        fprintf(stderr, "keel users create-admin: --email is required\n");
        keel_config_free(&cfg);
        return KEEL_EXIT_USAGE;
    }
    code = create_admin(&cfg, extra[2].value, extra[3].value ? extra[3].value : "Admin");
    keel_config_free(&cfg);
    return code;
}

const struct keel_command auth_cmd_users = {
    .name = "users",
    .summary = "create-admin --email E: create an administrator",
    .run = run,
};
