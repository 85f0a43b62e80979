/*
 * crossrank.h: C interface of crossrank, an inference engine for gte-multilingual
 * cross-encoder rerankers (Alibaba-NLP/gte-multilingual-reranker-base and fine-tunes).
 *
 * A cross-encoder reads a (query, document) pair and returns one logit; the score is
 * activation(logit), a sigmoid unless the model's config.json names another activation.
 *
 * Usage:
 *
 *     crossrank_model_params params = crossrank_model_params_default();
 *     params.device = CROSSRANK_DEVICE_CPU;
 *     crossrank_model *model = NULL;
 *     if (crossrank_model_load("path/to/model", &params, &model) != CROSSRANK_OK) {
 *         fprintf(stderr, "crossrank: %s\n", crossrank_last_error());
 *         return 1;
 *     }
 *     const char *docs[] = { "Beijing is the capital of China.", "Paris is in France." };
 *     size_t order[2];
 *     float scores[2];
 *     if (crossrank_rank(model, "capital of China", 2, docs, order, scores) != CROSSRANK_OK) {
 *         fprintf(stderr, "crossrank: %s\n", crossrank_last_error());
 *     } else {
 *         printf("best: %s (%.4f)\n", docs[order[0]], scores[0]);
 *     }
 *     crossrank_model_free(model);
 *
 * Link with -lcrossrank (pkg-config: crossrank). See README.md, "Embedding: the C API".
 *
 * Conventions
 *
 *   - Strings are NUL-terminated UTF-8. A NULL string, or one that is not valid UTF-8,
 *     fails the call with CROSSRANK_ERR_INVALID_ARGUMENT.
 *   - Every function that can fail returns a crossrank_status; the message of the last
 *     failed call on the calling thread is crossrank_last_error().
 *   - A failed call writes none of its outputs: on error, out_model, out_logits,
 *     out_scores and out_order hold what they held before the call. On success they are
 *     fully written.
 *   - Arrays of n elements may be NULL when n is 0.
 *   - No function aborts the process or lets an exception escape: bad arguments, model
 *     errors and internal bugs all come back as a status.
 *
 * Ownership
 *
 *   - A crossrank_model is created by crossrank_model_load and released by
 *     crossrank_model_free; nothing else allocates memory the caller must release.
 *   - Input strings and arrays are only read during the call; nothing keeps a pointer
 *     to them afterwards. Output arrays are allocated by the caller.
 *   - Strings returned by crossrank_version and crossrank_status_name are static; the
 *     string returned by crossrank_last_error belongs to the library (see there).
 *
 * Handles
 *
 *   A crossrank_model pointer is an opaque token, not the address of an object you may
 *   dereference. The library keeps a registry of live handles and never reuses a handle
 *   value within a process, so a freed, never-loaded or corrupted handle passed to any
 *   function is detected and rejected with CROSSRANK_ERR_INVALID_ARGUMENT instead of
 *   crashing, even if other models were loaded since.
 *
 * Thread safety
 *
 *   Every function may be called from any thread. A loaded model is immutable: any number
 *   of threads may call crossrank_score, crossrank_rank and crossrank_model_get_info on
 *   the same model at the same time, with no locking on the caller's side. (On the CPU,
 *   concurrent calls share the model's worker threads; on a GPU they may be serialized.)
 *   Loading and freeing different models concurrently is safe. Freeing a model while
 *   other threads are still scoring with it is memory-safe: the calls in flight finish
 *   normally, the model is released when the last of them returns, and later calls with
 *   the handle fail with CROSSRANK_ERR_INVALID_ARGUMENT. (It is still a logic error for
 *   a program to use a handle after freeing it.)
 *   Error messages are per thread: crossrank_last_error never reports another thread's
 *   failure.
 */

#ifndef CROSSRANK_H
#define CROSSRANK_H

#include <stddef.h>
#include <stdint.h>

/* CROSSRANK_API marks every exported function. On Windows define CROSSRANK_SHARED when
 * linking against the DLL. */
#ifndef CROSSRANK_API
#    if defined(_WIN32) && defined(CROSSRANK_SHARED)
#        define CROSSRANK_API __declspec(dllimport)
#    else
#        define CROSSRANK_API
#    endif
#endif

/* Warns when a returned status is ignored (GCC, Clang). */
#ifndef CROSSRANK_NODISCARD
#    if defined(__GNUC__) || defined(__clang__)
#        define CROSSRANK_NODISCARD __attribute__((warn_unused_result))
#    else
#        define CROSSRANK_NODISCARD
#    endif
#endif

/* Version of this interface. It changes only when a declaration in this header changes
 * incompatibly; functions added at the end keep it. Compare with crossrank_abi_version()
 * to detect a header/library mismatch at run time. */
#define CROSSRANK_ABI_VERSION 1

#ifdef __cplusplus
extern "C" {
#endif

/* A loaded model: configuration, weights on their device, tokenizer. Opaque. */
typedef struct crossrank_model crossrank_model;

typedef enum {
    CROSSRANK_OK = 0,
    /* A NULL pointer, invalid UTF-8, an unknown or freed model handle, a misaligned
     * array, an out-of-range parameter (e.g. max_length above the model's limit). */
    CROSSRANK_ERR_INVALID_ARGUMENT = 1,
    /* A file cannot be read, e.g. config.json missing from the model directory. */
    CROSSRANK_ERR_IO = 2,
    /* The model directory is missing or malformed: config.json, the safetensors
     * checkpoint (missing tensor, wrong shape or dtype, truncated file), tokenizer. */
    CROSSRANK_ERR_MODEL = 3,
    /* CUDA driver, library or kernel failure, or no usable GPU for CROSSRANK_DEVICE_CUDA. */
    CROSSRANK_ERR_DEVICE = 4,
    /* A bug in crossrank (including a caught panic). Please report it with the message. */
    CROSSRANK_ERR_INTERNAL = 5
} crossrank_status;

typedef enum {
    /* CUDA device cuda_device_index when a usable GPU, driver and libraries are present,
     * else the CPU. */
    CROSSRANK_DEVICE_AUTO = 0,
    /* The f32 CPU reference path, on every core. */
    CROSSRANK_DEVICE_CPU = 1,
    /* CUDA device cuda_device_index; fails with CROSSRANK_ERR_DEVICE when unusable. */
    CROSSRANK_DEVICE_CUDA = 2
} crossrank_device;

/* Load-time options. Start from crossrank_model_params_default() and change the fields
 * you care about. */
typedef struct {
    crossrank_device device;   /* default CROSSRANK_DEVICE_AUTO */
    int32_t cuda_device_index; /* CUDA ordinal for AUTO and CUDA, >= 0; default 0 */
    uint32_t max_length;       /* pair length limit in tokens, special tokens included;
                                  0: the model's default, min(tokenizer model_max_length,
                                  max_position_embeddings); longer pairs are truncated
                                  (longest_first) */
    uint32_t batch_tokens;     /* tokens per forward batch; 0: the engine's default */
} crossrank_model_params;

/* What a loaded model runs on and with. */
typedef struct {
    crossrank_device device;   /* CROSSRANK_DEVICE_CPU or CROSSRANK_DEVICE_CUDA, never AUTO */
    int32_t cuda_device_index; /* the CUDA ordinal, or -1 on the CPU */
    uint32_t max_length;       /* pair length limit in tokens, special tokens included */
    uint32_t batch_tokens;     /* tokens per forward batch */
    uint32_t hidden_size;
    uint32_t num_layers;
    uint32_t vocab_size;       /* rows of the embedding table */
} crossrank_model_info;

/* The engine version, e.g. "0.1.0". Static; never NULL. */
CROSSRANK_API const char *crossrank_version(void);

/* CROSSRANK_ABI_VERSION of the library. */
CROSSRANK_API uint32_t crossrank_abi_version(void);

/* The enumerator name of a status, e.g. "CROSSRANK_ERR_MODEL"; "CROSSRANK_ERR_UNKNOWN"
 * for a value outside the enum. Static; never NULL. */
CROSSRANK_API const char *crossrank_status_name(crossrank_status status);

/* The default load options: AUTO device, CUDA device 0, the model's max length, the
 * engine's batch size. */
CROSSRANK_API crossrank_model_params crossrank_model_params_default(void);

/* Loads the model directory model_dir (config.json, model.safetensors or a sharded
 * checkpoint with model.safetensors.index.json, tokenizer.json, tokenizer_config.json)
 * onto the device chosen by params, and stores a new handle in *out_model.
 *
 * params may be NULL for the defaults. Every tensor is validated at load, so a model
 * that loads will not fail later for a file reason. The call can take seconds (weights
 * are converted and, on a GPU, uploaded).
 *
 * Errors: CROSSRANK_ERR_INVALID_ARGUMENT (NULL model_dir or out_model, invalid UTF-8,
 * unknown device value, negative cuda_device_index, max_length above the model's
 * max_position_embeddings), CROSSRANK_ERR_MODEL (directory missing, malformed config,
 * checkpoint or tokenizer), CROSSRANK_ERR_IO (a file of the model cannot be read, e.g.
 * no config.json in the directory), CROSSRANK_ERR_DEVICE (CUDA requested and unusable). On error *out_model is left unchanged. Release the model with
 * crossrank_model_free. */
CROSSRANK_API CROSSRANK_NODISCARD crossrank_status crossrank_model_load(
        const char *model_dir, const crossrank_model_params *params, crossrank_model **out_model);

/* Releases a model. NULL, an already freed handle, and a pointer that is not a live
 * handle are ignored (no-op). If other threads are still scoring with the model, it is
 * released when the last of those calls returns. */
CROSSRANK_API void crossrank_model_free(crossrank_model *model);

/* Fills *out_info with what model runs on and with.
 * Errors: CROSSRANK_ERR_INVALID_ARGUMENT (bad handle, NULL out_info). */
CROSSRANK_API CROSSRANK_NODISCARD crossrank_status crossrank_model_get_info(
        const crossrank_model *model, crossrank_model_info *out_info);

/* Scores n_pairs (queries[i], documents[i]) pairs.
 *
 * On success out_logits[i] is the raw logit of pair i and out_scores[i] its score
 * (activation(logit), in (0, 1) for the default sigmoid), in input order. Either output
 * may be NULL when not wanted; when both are NULL the pairs are still scored (e.g. to
 * warm up) and nothing is written.
 *
 * Pairs longer than the model's max length are truncated (longest_first), as
 * sentence-transformers' CrossEncoder does. Internally the pairs are sorted by length
 * and packed into batches of about batch_tokens tokens; results come back in input order.
 *
 * n_pairs == 0 is not an error: the call returns CROSSRANK_OK and writes nothing, and
 * queries and documents may then be NULL (the model handle is still checked).
 *
 * Errors: CROSSRANK_ERR_INVALID_ARGUMENT (bad model handle; NULL queries or documents
 * array with n_pairs > 0; a NULL or non-UTF-8 string, reported with its index),
 * CROSSRANK_ERR_DEVICE, CROSSRANK_ERR_INTERNAL. On error nothing is written. */
CROSSRANK_API CROSSRANK_NODISCARD crossrank_status crossrank_score(
        crossrank_model *model, size_t n_pairs, const char *const *queries,
        const char *const *documents, float *out_logits, float *out_scores);

/* Scores each of n_documents documents against one query and sorts them best first,
 * like sentence-transformers' CrossEncoder.rank.
 *
 * On success out_order[k] is the index (into documents) of the k-th best document and
 * out_scores[k] its score. Ties in score are broken by logit, then by input order, so
 * the order is deterministic. Either output may be NULL when not wanted.
 *
 * n_documents == 0 is not an error: the call returns CROSSRANK_OK and writes nothing,
 * and documents may then be NULL (the model handle and the query are still checked).
 *
 * Errors: as crossrank_score, plus a NULL or non-UTF-8 query. On error nothing is
 * written. */
CROSSRANK_API CROSSRANK_NODISCARD crossrank_status crossrank_rank(
        crossrank_model *model, const char *query, size_t n_documents,
        const char *const *documents, size_t *out_order, float *out_scores);

/* The message of the last call that failed on the calling thread, or NULL if none has
 * failed on this thread. Successful calls do not clear it, so read it right after the
 * failing call. The string belongs to the library and stays valid until the next
 * failing call on this thread (or the thread's exit); copy it to keep it longer. */
CROSSRANK_API const char *crossrank_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* CROSSRANK_H */
