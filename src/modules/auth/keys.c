/*
 * keys.c - the JWT signing keyset and the password cost, from the
 * configuration.
 *
 * KEEL_JWT_SECRET keys the signatures (HS256 by default, EdDSA with
 * KEEL_JWT_ALGORITHM; see add_key). Without it, development and staging
 * use a random key kept in KEEL_DATA_DIR/jwt.key, created with mode 0600
 * on first start, so tokens survive restarts and the key never appears in
 * configuration or logs. KEEL_JWT_PREVIOUS_SECRET adds a verify-only key
 * for rotation. Kids are derived from the keys, so a rotated secret never
 * collides with the old one's kid.
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

const struct keel_jwt_keyset *auth_keyset(void)
{
    return &keyset;
}

const struct keel_password_params *auth_password_params(void)
{
    return &params;
}

void auth_password_params_set(const struct keel_config *cfg)
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

/* Adds the key made from `secret` (len bytes) with cfg's algorithm. HS256
 * uses a 32..64-byte secret as given (so other verifiers holding it
 * interoperate) and reduces any other length with SHA-256; EdDSA seeds its
 * key pair with SHA-256 of the secret. The kid is the first 8 bytes of the
 * SHA-256 of the key material (the public key for EdDSA), in hex. */
static keel_status add_key(const struct keel_config *cfg, const unsigned char *secret, size_t len)
{
    unsigned char key[crypto_hash_sha256_BYTES], id[crypto_hash_sha256_BYTES];
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    char kid[17];
    keel_status rc;

    if (cfg->jwt_algorithm == KEEL_CONFIG_JWT_EDDSA) {
        crypto_hash_sha256(key, secret, len);
        crypto_sign_seed_keypair(pk, sk, key);
        crypto_hash_sha256(id, pk, sizeof(pk));
        sodium_bin2hex(kid, sizeof(kid), id, 8);
        rc = keel_jwt_keyset_add_ed25519(&keyset, kid, key);
        sodium_memzero(sk, sizeof(sk));
    } else {
        if (len < KEEL_JWT_HS256_MIN_SECRET || len > KEEL_JWT_HS256_MAX_SECRET) {
            crypto_hash_sha256(key, secret, len);
            secret = key;
            len = sizeof(key);
        }
        crypto_hash_sha256(id, secret, len);
        sodium_bin2hex(kid, sizeof(kid), id, 8);
        rc = keel_jwt_keyset_add_hs256(&keyset, kid, secret, len);
    }
    sodium_memzero(key, sizeof(key));
    return rc;
}

keel_status auth_keys_init(const struct keel_config *cfg)
{
    unsigned char dev[DEV_KEY_LEN];
    keel_status rc;

    auth_password_params_set(cfg);
    keel_jwt_keyset_init(&keyset);
    if (cfg->jwt_secret) {
        rc = add_key(cfg, (const unsigned char *)cfg->jwt_secret, strlen(cfg->jwt_secret));
    } else {
        rc = dev_key(cfg->data_dir, dev);
        if (rc == KEEL_OK)
            rc = add_key(cfg, dev, DEV_KEY_LEN);
        sodium_memzero(dev, sizeof(dev));
    }
    /* The first key added signs; a previous secret only verifies. A
     * previous secret equal to the current one is the same kid: skip it. */
    if (rc == KEEL_OK && cfg->jwt_previous_secret) {
        rc = add_key(cfg, (const unsigned char *)cfg->jwt_previous_secret,
                     strlen(cfg->jwt_previous_secret));
        if (rc == KEEL_E_CONFLICT)
            rc = KEEL_OK;
    }
    if (rc < 0)
        keel_log(KEEL_LOG_ERROR, "cannot build the JWT keyset",
                 KEEL_LF_STR("error", keel_strerror(rc)));
    return rc;
}

void auth_keys_fini(void)
{
    keel_jwt_keyset_wipe(&keyset);
}
