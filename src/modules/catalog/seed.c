/*
 * seed.c - the demo catalog of `keel seed --products N` (issue 5;
 * docs/internals/catalog.md, "Seeding").
 *
 * DESIGN: product i (1-based) is generated from i alone: a splitmix64
 * stream seeded with i picks its category, name, description, price and
 * stock from the word lists below. Runs are therefore deterministic, a
 * larger run extends a smaller one with the same products, and the SKU
 * DEMO-<CATEGORY>-<i> is unique by construction; rows whose SKU exists
 * already are skipped (ON CONFLICT DO NOTHING), so seeding twice, or two
 * seeders racing, never fails or duplicates.
 *
 * Speed: rows go in multi-row INSERTs of ROWS_PER_STMT rows, STMTS_PER_TX
 * statements per transaction: a few round trips and one commit per
 * thousand products instead of one each. Ids are UUIDv7 and creation times
 * are spread over the past (90 s apart, newest last), so the created_at
 * sorts have something to show.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/db.h"
#include "keel/uuid.h"

#include "catalog_int.h"

#define ROWS_PER_STMT 100
#define STMTS_PER_TX  10
#define COLS_PER_ROW  10
#define CURRENCY      "EUR"

struct category {
    const char *name; /* the category as stored */
    const char *code; /* in SKUs */
    const char *const *nouns;
    const char *use; /* "for ..." phrase of descriptions */
    int64_t min_eur, max_eur;
};

static const char *const book_nouns[] = {"Garden",  "River",   "Winter",  "Atlas",  "Harbor",
                                         "Orchard", "Lantern", "Compass", "Meadow", NULL};
static const char *const electronics_nouns[] = {"Headphones", "Speaker", "Charger", "Keyboard",
                                                "Monitor",    "Webcam",  "Router",  "Power Bank",
                                                "Smartwatch", NULL};
static const char *const home_nouns[] = {"Lamp",  "Throw Blanket", "Cushion", "Vase",   "Mirror",
                                         "Shelf", "Rug",           "Clock",   "Candle", NULL};
static const char *const kitchen_nouns[] = {"Chef's Knife", "Skillet", "Kettle",  "Cutting Board",
                                            "Mixing Bowl",  "Teapot",  "Grinder", "Saucepan",
                                            "Mug Set",      NULL};
static const char *const garden_nouns[] = {
    "Planter", "Watering Can", "Pruning Shears", "Hose",  "Bird Feeder",
    "Trowel",  "Seed Kit",     "Lantern",        "Bench", NULL};
static const char *const sports_nouns[] = {
    "Yoga Mat",      "Water Bottle",   "Running Shoes", "Dumbbell Set", "Backpack",
    "Tennis Racket", "Cycling Gloves", "Jump Rope",     "Tent",         NULL};
static const char *const toys_nouns[] = {
    "Puzzle",     "Building Set", "Plush Bear", "Kite",      "Train Set",
    "Board Game", "Yo-Yo",        "Drum",       "Robot Kit", NULL};
static const char *const clothing_nouns[] = {"Sweater", "Rain Jacket", "Scarf",  "T-Shirt",
                                             "Beanie",  "Socks",       "Hoodie", "Chinos",
                                             "Shirt",   NULL};
static const char *const beauty_nouns[] = {"Face Cream",  "Shampoo",  "Lip Balm",   "Soap Bar",
                                           "Body Lotion", "Hair Oil", "Hand Cream", "Bath Salts",
                                           "Serum",       NULL};
static const char *const office_nouns[] = {
    "Notebook",  "Fountain Pen", "Desk Organizer", "Planner",    "Stapler",
    "Desk Lamp", "Pencil Case",  "Letter Tray",    "Whiteboard", NULL};

static const struct category categories[] = {
    {"books", "BOOK", book_nouns, "for long evenings and curious minds", 8, 45},
    {"electronics", "ELEC", electronics_nouns, "for work, travel and play", 15, 400},
    {"home", "HOME", home_nouns, "for a calmer, brighter home", 10, 180},
    {"kitchen", "KTCH", kitchen_nouns, "for everyday cooking", 9, 160},
    {"garden", "GRDN", garden_nouns, "for balconies, yards and allotments", 6, 140},
    {"sports", "SPRT", sports_nouns, "for training indoors and out", 8, 220},
    {"toys", "TOYS", toys_nouns, "for ages three and up", 7, 90},
    {"clothing", "CLTH", clothing_nouns, "for every season", 12, 150},
    {"beauty", "BEAU", beauty_nouns, "for a simple daily routine", 5, 60},
    {"office", "OFFC", office_nouns, "for a tidy, focused desk", 3, 120},
};

static const char *const adjectives[] = {
    "Classic", "Compact", "Everyday", "Deluxe",  "Handmade", "Modern",        "Nordic",
    "Premium", "Rustic",  "Slim",     "Vintage", "Urban",    "Coastal",       "Essential",
    "Bright",  "Quiet",   "Bold",     "Gentle",  "Sturdy",   "Featherweight",
};
static const char *const book_adjectives[] = {"Silent",  "Hidden", "Last",   "Golden",
                                              "Distant", "Secret", "Broken", "Northern"};
static const char *const materials[] = {"Oak",   "Walnut", "Linen", "Cotton", "Ceramic",
                                        "Steel", "Bamboo", "Wool",  "Glass",  "Copper",
                                        "Slate", "Cedar",  "Sage",  "Indigo", "Amber"};
static const char *const features[] = {
    "Made to last, with carefully chosen materials and a two-year warranty.",
    "Designed in Europe and tested by people who use it every day.",
    "Light enough to carry anywhere, sturdy enough to rely on.",
    "Easy to clean and easy to love.",
    "A thoughtful gift that fits almost any occasion.",
    "Packed in recycled, plastic-free packaging.",
    "Rated highly by customers for comfort and finish.",
    "Small details, like rounded edges and a soft-touch surface, make the difference.",
    "Works well on its own and even better as part of the collection.",
    "Produced in small batches to keep quality consistent.",
};
static const char *const closings[] = {
    "Free returns within 30 days.",   "Ships within two working days.",
    "Limited stock: order early.",    "Available while supplies last.",
    "Part of our bestselling range.", "New this season.",
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static size_t count_nouns(const char *const *nouns)
{
    size_t n = 0;

    while (nouns[n])
        n++;
    return n;
}

/* splitmix64 (Vigna): a full-period generator whose every seed gives a
 * good stream, which is what one stream per product index needs. */
static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));

    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static size_t pick(uint64_t *s, size_t n)
{
    return (size_t)(next(s) % n);
}

/* One generated row; strings NUL-terminated. */
struct seed_row {
    char id[37];
    char sku[32];
    char name[128];
    char description[512];
    const char *category;
    int64_t price_cents, stock, created_us;
};

static void generate(int64_t i, int64_t created_us, struct seed_row *row)
{
    uint64_t s = UINT64_C(0x6b65656c) ^ (uint64_t)i; /* "keel" */
    const struct category *cat = &categories[pick(&s, N_OF(categories))];
    const char *noun = cat->nouns[pick(&s, count_nouns(cat->nouns))];
    const char *adj = adjectives[pick(&s, N_OF(adjectives))];
    const char *mat = materials[pick(&s, N_OF(materials))];
    int64_t euros;

    keel_uuid_v7(row->id);
    snprintf(row->sku, sizeof(row->sku), "DEMO-%s-%06lld", cat->code, (long long)i);
    if (cat->nouns == book_nouns)
        snprintf(row->name, sizeof(row->name), "The %s %s",
                 book_adjectives[pick(&s, N_OF(book_adjectives))], noun);
    else
        snprintf(row->name, sizeof(row->name), "%s %s %s", adj, mat, noun);
    snprintf(row->description, sizeof(row->description), "A %s %s %s, finished in %s. %s %s",
             adjectives[pick(&s, N_OF(adjectives))], noun, cat->use, mat,
             features[pick(&s, N_OF(features))], closings[pick(&s, N_OF(closings))]);
    /* The first sentence is running text: lowercase its words. */
    for (char *p = row->description + 2; *p && *p != '.'; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    row->category = cat->name;
    euros = cat->min_eur + (int64_t)pick(&s, (size_t)(cat->max_eur - cat->min_eur + 1));
    /* Mostly charm prices (12.99), some round ones (13.00). */
    row->price_cents = pick(&s, 3) == 0 ? euros * 100 : euros * 100 - 1;
    row->stock = pick(&s, 12) == 0 ? 0 : (int64_t)pick(&s, 501);
    row->created_us = created_us;
}

/* The INSERT for k rows: "($1, ..., 1, $9, $9), ..." (version 1, created
 * and updated the same); SKUs already present are skipped. */
static char *insert_sql(unsigned k)
{
    size_t cap = 256 + (size_t)k * 96, len;
    char *sql = keel_xmalloc(cap);
    unsigned r, b;

    len = (size_t)snprintf(sql, cap,
                           "INSERT INTO products (id, sku, name, description, price_cents,"
                           " currency, category, stock, version, created_us, updated_us) VALUES ");
    for (r = 0; r < k; r++) {
        b = r * COLS_PER_ROW;
        len += (size_t)snprintf(
            sql + len, cap - len, "%s($%u, $%u, $%u, $%u, $%u, $%u, $%u, $%u, 1, $%u, $%u)",
            r ? ", " : "", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 9, b + 10);
    }
    snprintf(sql + len, cap - len, " ON CONFLICT (sku) DO NOTHING");
    return sql;
}

struct batch {
    int64_t first, last; /* product indexes of this transaction, inclusive */
    int64_t n;           /* the run's N */
    int64_t now_us;
    struct seed_row rows[ROWS_PER_STMT];
    struct keel_db_param p[ROWS_PER_STMT * COLS_PER_ROW];
    char *sql_full; /* for ROWS_PER_STMT rows */
    int64_t inserted;
};

static keel_status insert_rows(struct keel_db_conn *c, struct batch *b, int64_t from, unsigned k)
{
    struct keel_db_param *p = b->p;
    char *sql = k == ROWS_PER_STMT ? b->sql_full : insert_sql(k);
    int64_t added = 0;
    keel_status rc;
    unsigned r;

    for (r = 0; r < k; r++) {
        struct seed_row *row = &b->rows[r];
        int64_t i = from + r;

        generate(i, b->now_us - (b->n - i) * INT64_C(90000000), row);
        p[r * COLS_PER_ROW + 0] = KEEL_DB_UUID(row->id);
        p[r * COLS_PER_ROW + 1] = KEEL_DB_TEXT(row->sku);
        p[r * COLS_PER_ROW + 2] = KEEL_DB_TEXT(row->name);
        p[r * COLS_PER_ROW + 3] = KEEL_DB_TEXT(row->description);
        p[r * COLS_PER_ROW + 4] = KEEL_DB_INT(row->price_cents);
        p[r * COLS_PER_ROW + 5] = KEEL_DB_TEXT(CURRENCY);
        p[r * COLS_PER_ROW + 6] = KEEL_DB_TEXT(row->category);
        p[r * COLS_PER_ROW + 7] = KEEL_DB_INT(row->stock);
        p[r * COLS_PER_ROW + 8] = KEEL_DB_INT(row->created_us);
        p[r * COLS_PER_ROW + 9] = KEEL_DB_INT(row->created_us);
    }
    rc = keel_db_exec(c, sql, p, k * COLS_PER_ROW, &added);
    if (sql != b->sql_full)
        free(sql);
    if (rc == KEEL_OK)
        b->inserted += added;
    return rc;
}

/* One transaction: products first..last. Retried whole on a serialization
 * failure, so the count starts over each time. */
static keel_status batch_tx(struct keel_db_conn *c, void *arg)
{
    struct batch *b = arg;
    int64_t i = b->first, k;
    keel_status rc = KEEL_OK;

    b->inserted = 0;
    while (rc == KEEL_OK && i <= b->last) {
        k = b->last - i + 1;
        if (k > ROWS_PER_STMT)
            k = ROWS_PER_STMT;
        rc = insert_rows(c, b, i, (unsigned)k);
        i += k;
    }
    return rc;
}

static keel_status has_products(struct keel_db *db, bool *out)
{
    struct keel_db_conn *c;
    keel_status rc;

    rc = keel_db_acquire(db, KEEL_DB_READ_PRIMARY, NULL, &c);
    if (rc < 0)
        return rc;
    rc = keel_db_query_one(c, "SELECT 1 FROM products LIMIT 1", NULL, 0, NULL, NULL);
    keel_db_release(c);
    *out = rc == KEEL_OK;
    return rc == KEEL_E_NOT_FOUND ? KEEL_OK : rc;
}

keel_status
catalog_seed(struct keel_db *db, int64_t n, bool if_empty, struct catalog_seed_result *out)
{
    struct batch *b;
    bool any = false;
    keel_status rc = KEEL_OK;
    int64_t i;

    memset(out, 0, sizeof(*out));
    out->requested = n;
    if (if_empty) {
        rc = has_products(db, &any);
        if (rc < 0 || any) {
            out->skipped = any;
            return rc;
        }
    }
    b = keel_xcalloc(1, sizeof(*b));
    b->n = n;
    b->now_us = keel_wall_ms() * 1000;
    b->sql_full = insert_sql(ROWS_PER_STMT);
    for (i = 1; rc == KEEL_OK && i <= n; i += ROWS_PER_STMT * STMTS_PER_TX) {
        b->first = i;
        b->last = i + ROWS_PER_STMT * STMTS_PER_TX - 1;
        if (b->last > n)
            b->last = n;
        rc = keel_db_transaction(db, NULL, batch_tx, b);
        if (rc == KEEL_OK)
            out->inserted += b->inserted;
    }
    free(b->sql_full);
    free(b);
    return rc;
}
