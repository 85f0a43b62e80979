/*
 * crossrank_example.c: score (query, document) pairs and rank documents through the
 * crossrank C ABI, then check that errors come back as documented in crossrank.h.
 *
 * Build (after `cargo build --release --lib`) and run:
 *
 *     cc -std=c99 -Wall -Wextra -Iinclude examples/c/crossrank_example.c \
 *        -Ltarget/release -lcrossrank -Wl,-rpath,"$PWD/target/release" -o crossrank_example
 *     ./crossrank_example tests/fixtures/tiny
 *     ./crossrank_example tests/fixtures/tiny --device cpu --pairs pairs.tsv
 *
 * or, with crossrank installed: cc ... $(pkg-config --cflags --libs crossrank).
 *
 * --pairs reads `query<TAB>document` lines (as `crossrank score --format tsv`); without it
 * a few built-in pairs are scored. The documents are then ranked against the first query.
 *
 * Output on stdout, tab-separated:
 *
 *     pair   <i>         <logit>  <score>      one per pair, input order (%.9g: exact f32)
 *     rank   <position>  <index>  <score>      best first
 *     check  <name>      <status name>  <ok|FAILED>  <crossrank_last_error() or ->
 *
 * Exit status: 0 when everything behaved as documented, 1 otherwise, 2 on bad usage.
 */

#include <crossrank.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

/* Prints one check line; counts it as failed unless `ok`. */
static void check(const char *name, crossrank_status status, int ok) {
    const char *message = status == CROSSRANK_OK ? NULL : crossrank_last_error();
    printf("check\t%s\t%s\t%s\t%s\n", name, crossrank_status_name(status), ok ? "ok" : "FAILED",
           message ? message : "-");
    if (!ok) {
        failures++;
    }
}

/* A failing call must return `expected` and leave a non-empty message. */
static void expect_error(const char *name, crossrank_status status, crossrank_status expected) {
    const char *message = crossrank_last_error();
    check(name, status, status == expected && message != NULL && message[0] != '\0');
}

/* --- Reading a pairs file ------------------------------------------------------------- */

typedef struct {
    char *text;        /* the whole file; the strings below point into it */
    size_t n;
    const char **queries;
    const char **documents;
} pairs;

static int read_pairs(const char *path, pairs *out) {
    FILE *f = fopen(path, "rb");
    long size;
    size_t i, cap = 16;
    char *line;
    if (!f) {
        perror(path);
        return 0;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        perror(path);
        fclose(f);
        return 0;
    }
    out->text = malloc((size_t)size + 1);
    out->queries = malloc(cap * sizeof *out->queries);
    out->documents = malloc(cap * sizeof *out->documents);
    out->n = 0;
    if (!out->text || !out->queries || !out->documents || fread(out->text, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "%s: cannot read\n", path);
        fclose(f);
        return 0;
    }
    fclose(f);
    out->text[size] = '\0';
    for (line = out->text, i = 1; *line != '\0'; i++) {
        char *end = strchr(line, '\n');
        char *next = end ? end + 1 : line + strlen(line);
        char *tab;
        if (end) {
            *end = '\0';
        }
        if (end && end > line && end[-1] == '\r') {
            end[-1] = '\0';
        }
        tab = strchr(line, '\t');
        if (!tab || strchr(tab + 1, '\t')) {
            fprintf(stderr, "%s:%lu: expected `query<TAB>document`\n", path, (unsigned long)i);
            return 0;
        }
        *tab = '\0';
        if (out->n == cap) {
            const char **q, **d;
            cap *= 2;
            q = realloc(out->queries, cap * sizeof *q);
            if (q) {
                out->queries = q;
            }
            d = realloc(out->documents, cap * sizeof *d);
            if (d) {
                out->documents = d;
            }
            if (!q || !d) {
                fprintf(stderr, "out of memory\n");
                return 0;
            }
        }
        out->queries[out->n] = line;
        out->documents[out->n] = tab + 1;
        out->n++;
        line = next;
    }
    return 1;
}

/* --- The error paths ------------------------------------------------------------------- */

static void check_error_paths(const char *model_dir, crossrank_model *model) {
    crossrank_model *out = NULL;
    crossrank_model *freed = NULL;
    crossrank_model_params params = crossrank_model_params_default();
    crossrank_model_info info;
    const char *q[2] = {"query", "query"};
    const char *d[2] = {"a document", "another document"};
    const char *bad_utf8[2] = {"a document", "\xff\xfe not UTF-8"};
    const char *with_null[2] = {"a document", NULL};
    float logits[2] = {-7.0f, -7.0f};
    float scores[2] = {-7.0f, -7.0f};
    size_t order[2] = {77, 77};
    int sentinel = 0;
    crossrank_status s;

#define UNTOUCHED (logits[0] == -7.0f && logits[1] == -7.0f && scores[0] == -7.0f && \
                   scores[1] == -7.0f && order[0] == 77 && order[1] == 77)

    /* Loading. */
    s = crossrank_model_load("/nonexistent/crossrank-model", NULL, &out);
    expect_error("load-missing-dir", s, CROSSRANK_ERR_MODEL);
    check("load-missing-dir-out-untouched", s, out == NULL);
    expect_error("load-null-dir", crossrank_model_load(NULL, NULL, &out), CROSSRANK_ERR_INVALID_ARGUMENT);
    expect_error("load-null-out", crossrank_model_load(model_dir, NULL, NULL), CROSSRANK_ERR_INVALID_ARGUMENT);
    expect_error("load-invalid-utf8-path", crossrank_model_load("/tmp/\xff", NULL, &out),
                 CROSSRANK_ERR_INVALID_ARGUMENT);
    params.device = (crossrank_device)42;
    expect_error("load-unknown-device", crossrank_model_load(model_dir, &params, &out),
                 CROSSRANK_ERR_INVALID_ARGUMENT);
    params = crossrank_model_params_default();
    params.device = CROSSRANK_DEVICE_CPU;
    params.max_length = 1u << 30;
    expect_error("load-max-length-too-large", crossrank_model_load(model_dir, &params, &out),
                 CROSSRANK_ERR_INVALID_ARGUMENT);
    check("load-failures-leave-out-untouched", CROSSRANK_OK, out == NULL);

    /* Scoring with bad arguments: an error, and the outputs untouched. */
    expect_error("score-null-model", crossrank_score(NULL, 2, q, d, logits, scores),
                 CROSSRANK_ERR_INVALID_ARGUMENT);
    expect_error("score-null-queries", crossrank_score(model, 2, NULL, d, logits, scores),
                 CROSSRANK_ERR_INVALID_ARGUMENT);
    expect_error("score-null-documents", crossrank_score(model, 2, q, NULL, logits, scores),
                 CROSSRANK_ERR_INVALID_ARGUMENT);
    expect_error("score-null-string", crossrank_score(model, 2, q, with_null, logits, scores),
                 CROSSRANK_ERR_INVALID_ARGUMENT);
    expect_error("score-invalid-utf8", crossrank_score(model, 2, q, bad_utf8, logits, scores),
                 CROSSRANK_ERR_INVALID_ARGUMENT);
    expect_error("rank-null-query", crossrank_rank(model, NULL, 2, d, order, scores),
                 CROSSRANK_ERR_INVALID_ARGUMENT);
    expect_error("rank-invalid-utf8", crossrank_rank(model, "query", 2, bad_utf8, order, scores),
                 CROSSRANK_ERR_INVALID_ARGUMENT);
    expect_error("rank-null-documents", crossrank_rank(model, "query", 2, NULL, order, scores),
                 CROSSRANK_ERR_INVALID_ARGUMENT);
    expect_error("info-null-out", crossrank_model_get_info(model, NULL), CROSSRANK_ERR_INVALID_ARGUMENT);
    check("failed-calls-leave-outputs-untouched", CROSSRANK_OK, UNTOUCHED);

    /* Zero pairs: OK, nothing written, NULL arrays allowed; the handle is still checked. */
    s = crossrank_score(model, 0, NULL, NULL, logits, scores);
    check("score-zero-pairs", s, s == CROSSRANK_OK && UNTOUCHED);
    s = crossrank_rank(model, "query", 0, NULL, order, scores);
    check("rank-zero-documents", s, s == CROSSRANK_OK && UNTOUCHED);
    expect_error("score-zero-pairs-null-model", crossrank_score(NULL, 0, NULL, NULL, NULL, NULL),
                 CROSSRANK_ERR_INVALID_ARGUMENT);
    expect_error("rank-zero-documents-null-query", crossrank_rank(model, NULL, 0, NULL, NULL, NULL),
                 CROSSRANK_ERR_INVALID_ARGUMENT);

    /* Stale and foreign handles are rejected, not dereferenced. */
    params = crossrank_model_params_default();
    params.device = CROSSRANK_DEVICE_CPU;
    s = crossrank_model_load(model_dir, &params, &freed);
    check("load-second-model", s, s == CROSSRANK_OK && freed != NULL && freed != model);
    crossrank_model_free(freed);
    expect_error("score-freed-model", crossrank_score(freed, 2, q, d, logits, scores),
                 CROSSRANK_ERR_INVALID_ARGUMENT);
    expect_error("rank-freed-model", crossrank_rank(freed, "query", 2, d, order, scores),
                 CROSSRANK_ERR_INVALID_ARGUMENT);
    expect_error("info-freed-model", crossrank_model_get_info(freed, &info), CROSSRANK_ERR_INVALID_ARGUMENT);
    expect_error("score-foreign-pointer",
                 crossrank_score((crossrank_model *)(void *)&sentinel, 2, q, d, logits, scores),
                 CROSSRANK_ERR_INVALID_ARGUMENT);
    crossrank_model_free(freed); /* double free: a no-op */
    crossrank_model_free((crossrank_model *)(void *)&sentinel); /* foreign: a no-op */
    crossrank_model_free(NULL); /* NULL: a no-op */
    check("free-null-stale-foreign-are-no-ops", CROSSRANK_OK, sentinel == 0);
    check("failed-calls-leave-outputs-untouched-2", CROSSRANK_OK, UNTOUCHED);

    /* The model still works after all that, and a success does not clear the message. */
    s = crossrank_score(model, 2, q, d, logits, NULL);
    check("score-after-errors", s, s == CROSSRANK_OK && logits[0] != -7.0f && scores[0] == -7.0f);
    check("last-error-survives-success", s, crossrank_last_error() != NULL);
    check("status-name-unknown", CROSSRANK_OK,
          strcmp(crossrank_status_name((crossrank_status)99), "CROSSRANK_ERR_UNKNOWN") == 0);
#undef UNTOUCHED
}

/* --- main ------------------------------------------------------------------------------- */

static const char *builtin_queries[] = {
    "what is the capital of China?",
    "what is the capital of China?",
    "how to implement quick sort in python?",
    "¿cuál es la capital de Francia?",
};
static const char *builtin_documents[] = {
    "Beijing is the capital of the People's Republic of China.",
    "The giant panda is a bear species endemic to China.",
    "Quicksort picks a pivot and partitions the array around it, then recurses.",
    "París es la capital de Francia.",
};

int main(int argc, char **argv) {
    const char *model_dir = NULL, *pairs_path = NULL, *device = "auto";
    crossrank_model_params params = crossrank_model_params_default();
    crossrank_model *model = NULL;
    crossrank_model_info info;
    crossrank_status s;
    pairs input = {NULL, 0, NULL, NULL};
    float *logits = NULL, *scores = NULL, *rank_scores = NULL;
    size_t *order = NULL, i;
    int a;

    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--device") == 0 && a + 1 < argc) {
            device = argv[++a];
        } else if (strcmp(argv[a], "--pairs") == 0 && a + 1 < argc) {
            pairs_path = argv[++a];
        } else if (argv[a][0] != '-' && !model_dir) {
            model_dir = argv[a];
        } else {
            model_dir = NULL;
            break;
        }
    }
    if (!model_dir) {
        fprintf(stderr, "usage: %s MODEL_DIR [--device auto|cpu|cuda|cuda:N] [--pairs FILE.tsv]\n", argv[0]);
        return 2;
    }
    if (strcmp(device, "cpu") == 0) {
        params.device = CROSSRANK_DEVICE_CPU;
    } else if (strncmp(device, "cuda", 4) == 0) {
        params.device = CROSSRANK_DEVICE_CUDA;
        params.cuda_device_index = device[4] == ':' ? atoi(device + 5) : 0;
    } else if (strcmp(device, "auto") != 0) {
        fprintf(stderr, "unknown device `%s`\n", device);
        return 2;
    }

    if (crossrank_abi_version() != CROSSRANK_ABI_VERSION) {
        fprintf(stderr, "crossrank.h is ABI %d but the library is ABI %u\n", CROSSRANK_ABI_VERSION,
                (unsigned)crossrank_abi_version());
        return 1;
    }
    if (pairs_path) {
        if (!read_pairs(pairs_path, &input)) {
            free(input.text);
            free(input.queries);
            free(input.documents);
            return 2;
        }
    } else {
        input.n = sizeof builtin_queries / sizeof builtin_queries[0];
        input.queries = builtin_queries;
        input.documents = builtin_documents;
    }

    s = crossrank_model_load(model_dir, &params, &model);
    if (s != CROSSRANK_OK) {
        fprintf(stderr, "crossrank_model_load: %s: %s\n", crossrank_status_name(s), crossrank_last_error());
        failures++;
        goto done;
    }
    if (crossrank_model_get_info(model, &info) == CROSSRANK_OK) {
        fprintf(stderr, "crossrank %s: %s on %s (cuda device %d), max length %u, %u tokens per batch\n",
                crossrank_version(), model_dir, info.device == CROSSRANK_DEVICE_CUDA ? "cuda" : "cpu",
                (int)info.cuda_device_index, (unsigned)info.max_length, (unsigned)info.batch_tokens);
    }

    /* Score every pair (input order). */
    logits = malloc((input.n ? input.n : 1) * sizeof *logits);
    scores = malloc((input.n ? input.n : 1) * sizeof *scores);
    rank_scores = malloc((input.n ? input.n : 1) * sizeof *rank_scores);
    order = malloc((input.n ? input.n : 1) * sizeof *order);
    if (!logits || !scores || !rank_scores || !order) {
        fprintf(stderr, "out of memory\n");
        failures++;
        goto done;
    }
    s = crossrank_score(model, input.n, input.queries, input.documents, logits, scores);
    if (s != CROSSRANK_OK) {
        fprintf(stderr, "crossrank_score: %s: %s\n", crossrank_status_name(s), crossrank_last_error());
        failures++;
        goto done;
    }
    for (i = 0; i < input.n; i++) {
        printf("pair\t%lu\t%.9g\t%.9g\n", (unsigned long)i, (double)logits[i], (double)scores[i]);
    }

    /* Rank every document against the first query. */
    if (input.n > 0) {
        s = crossrank_rank(model, input.queries[0], input.n, input.documents, order, rank_scores);
        if (s != CROSSRANK_OK) {
            fprintf(stderr, "crossrank_rank: %s: %s\n", crossrank_status_name(s), crossrank_last_error());
            failures++;
            goto done;
        }
        for (i = 0; i < input.n; i++) {
            printf("rank\t%lu\t%lu\t%.9g\n", (unsigned long)i, (unsigned long)order[i], (double)rank_scores[i]);
        }
    }

    check_error_paths(model_dir, model);

done:
    crossrank_model_free(model);
    free(logits);
    free(scores);
    free(rank_scores);
    free(order);
    if (pairs_path) {
        free(input.text);
        free(input.queries);
        free(input.documents);
    }
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
    }
    return failures ? 1 : 0;
}
