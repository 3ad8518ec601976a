/*
 * keys.c - the JWT signing keyset and the password cost, from the
 * configuration.
 *
 * KEEL_JWT_SECRET is the HS256 key (32..64 bytes; a longer secret is
 * reduced with SHA-256 so any passphrase-length value works outside
 * production, which demands >= 32 bytes at load). Without it, development
 * and staging use a random key kept in KEEL_DATA_DIR/jwt.key, created with
 * mode 0600 on first start, so tokens survive restarts and the key never
 * appears in configuration or logs. The kid is derived from the key
 * (first 8 bytes of its SHA-256, hex), so a rotated secret never collides
 * with the old one's kid.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keel/config.h"
#include "keel/log.h"

#include "auth_int.h"

#define DEV_KEY_FILE "jwt.key"
#define DEV_KEY_LEN  32

static struct keel_jwt_keyset keyset;
static struct keel_password_params params = KEEL_PASSWORD_PARAMS_DEFAULT;

const struct keel_jwt_keyset *keel__auth_keyset(void)
{
    return &keyset;
}

const struct keel_password_params *keel__auth_password_params(void)
{
    return &params;
}

void keel__auth_password_params_set(const struct keel_config *cfg)
{
    params.memlimit = (size_t)cfg->password_memory_kib * 1024;
    params.opslimit = cfg->password_iterations;
}

/* Reads the development key, or creates it (O_EXCL, so two processes
 * starting at once agree on one key: the loser reads the winner's). */
static keel_status dev_key(const char *dir, unsigned char key[DEV_KEY_LEN])
{
    char path[4096];
    ssize_t n;
    int fd, tries;

    if (snprintf(path, sizeof(path), "%s/%s", dir, DEV_KEY_FILE) >= (int)sizeof(path))
        return KEEL_E_INVALID;
    (void)mkdir(dir, 0700);
    for (tries = 0; tries < 50; tries++) {
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            n = read(fd, key, DEV_KEY_LEN);
            close(fd);
            if (n == DEV_KEY_LEN)
                return KEEL_OK;
            usleep(20000); /* being written by another process */
            continue;
        }
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            if (errno == EEXIST)
                continue;
            keel_log(KEEL_LOG_ERROR, "cannot create the development JWT key",
                     KEEL_LF_STR("path", path), KEEL_LF_STR("error", strerror(errno)));
            return KEEL_E_INTERNAL;
        }
        randombytes_buf(key, DEV_KEY_LEN);
        n = write(fd, key, DEV_KEY_LEN);
        if (n != DEV_KEY_LEN || fsync(fd) != 0) {
            close(fd);
            unlink(path);
            return KEEL_E_INTERNAL;
        }
        close(fd);
        keel_log(KEEL_LOG_INFO, "created a development JWT key", KEEL_LF_STR("path", path));
        return KEEL_OK;
    }
    return KEEL_E_INTERNAL;
}

keel_status keel__auth_keys_init(const struct keel_config *cfg)
{
    unsigned char key[crypto_hash_sha256_BYTES], kidhash[crypto_hash_sha256_BYTES];
    const unsigned char *secret;
    char kid[17];
    size_t len;
    keel_status rc;

    keel__auth_password_params_set(cfg);
    keel_jwt_keyset_init(&keyset);
    if (cfg->jwt_secret) {
        secret = (const unsigned char *)cfg->jwt_secret;
        len = strlen(cfg->jwt_secret);
        if (len < KEEL_JWT_HS256_MIN_SECRET || len > KEEL_JWT_HS256_MAX_SECRET) {
            /* Outside production a short or long secret is accepted and
             * reduced to a 32-byte key; a proper key is used as given, so
             * other verifiers holding the same secret interoperate. */
            crypto_hash_sha256(key, secret, len);
            secret = key;
            len = sizeof(key);
        }
    } else {
        rc = dev_key(cfg->data_dir, key);
        if (rc < 0)
            return rc;
        secret = key;
        len = DEV_KEY_LEN;
    }
    crypto_hash_sha256(kidhash, secret, len);
    sodium_bin2hex(kid, sizeof(kid), kidhash, 8);
    rc = keel_jwt_keyset_add_hs256(&keyset, kid, secret, len);
    sodium_memzero(key, sizeof(key));
    sodium_memzero(kidhash, sizeof(kidhash));
    return rc;
}

void keel__auth_keys_fini(void)
{
    keel_jwt_keyset_wipe(&keyset);
}
