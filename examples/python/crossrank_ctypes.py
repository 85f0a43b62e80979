"""crossrank from Python through its C ABI (ctypes, standard library only).

    from crossrank_ctypes import CrossRank, CrossRankError

    with CrossRank("tests/fixtures/tiny", device="cpu") as model:
        logits, scores = model.score([("what is panda?", "The giant panda is a bear.")])
        for index, score in model.rank("what is panda?", ["hi", "The giant panda is a bear."]):
            print(index, score)

The library is found through $CROSSRANK_LIB (a path to libcrossrank.so), then the system
search path (`ctypes.util.find_library`). Run as a script to score pairs from a TSV file:

    python3 examples/python/crossrank_ctypes.py MODEL_DIR [--device cpu] [--pairs FILE.tsv]
        [--lib target/release/libcrossrank.so]

It prints the same lines as examples/c/crossrank_example.c (`pair`, `rank`, `check`), with
%.9g floats, and exits 0 only if every error check behaved as documented.
"""

import ctypes
import ctypes.util
import os
import sys

OK = 0
ERR_INVALID_ARGUMENT = 1
ERR_IO = 2
ERR_MODEL = 3
ERR_DEVICE = 4
ERR_INTERNAL = 5

DEVICES = {"auto": 0, "cpu": 1, "cuda": 2}


class CrossRankError(Exception):
    """A failed crossrank call: `status` (an ERR_* code), `status_name`, `message`."""

    def __init__(self, status, status_name, message):
        super().__init__(f"{status_name}: {message}")
        self.status = status
        self.status_name = status_name
        self.message = message


class ModelParams(ctypes.Structure):
    _fields_ = [
        ("device", ctypes.c_int),
        ("cuda_device_index", ctypes.c_int32),
        ("max_length", ctypes.c_uint32),
        ("batch_tokens", ctypes.c_uint32),
    ]


class ModelInfo(ctypes.Structure):
    _fields_ = [
        ("device", ctypes.c_int),
        ("cuda_device_index", ctypes.c_int32),
        ("max_length", ctypes.c_uint32),
        ("batch_tokens", ctypes.c_uint32),
        ("hidden_size", ctypes.c_uint32),
        ("num_layers", ctypes.c_uint32),
        ("vocab_size", ctypes.c_uint32),
    ]


def load_library(path=None):
    """Opens libcrossrank and declares every function's signature."""
    path = path or os.environ.get("CROSSRANK_LIB") or ctypes.util.find_library("crossrank")
    if not path:
        raise OSError("libcrossrank not found: set CROSSRANK_LIB to the path of libcrossrank.so")
    lib = ctypes.CDLL(path)
    c_str_array = ctypes.POINTER(ctypes.c_char_p)
    model_p = ctypes.c_void_p
    sigs = {
        "crossrank_version": (ctypes.c_char_p, []),
        "crossrank_abi_version": (ctypes.c_uint32, []),
        "crossrank_status_name": (ctypes.c_char_p, [ctypes.c_int]),
        "crossrank_model_params_default": (ModelParams, []),
        "crossrank_model_load": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(ModelParams), ctypes.POINTER(model_p)]),
        "crossrank_model_free": (None, [model_p]),
        "crossrank_model_get_info": (ctypes.c_int, [model_p, ctypes.POINTER(ModelInfo)]),
        "crossrank_score": (ctypes.c_int, [model_p, ctypes.c_size_t, c_str_array, c_str_array,
                                           ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]),
        "crossrank_rank": (ctypes.c_int, [model_p, ctypes.c_char_p, ctypes.c_size_t, c_str_array,
                                          ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_float)]),
        "crossrank_last_error": (ctypes.c_char_p, []),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    if lib.crossrank_abi_version() != 1:
        raise OSError(f"{path}: crossrank ABI {lib.crossrank_abi_version()}, this wrapper speaks ABI 1")
    return lib


def _utf8(s):
    """str → UTF-8 bytes; bytes pass through unchanged (the library validates them)."""
    return s if isinstance(s, bytes) else s.encode("utf-8")


def _strings(items):
    encoded = [_utf8(s) for s in items]
    return (ctypes.c_char_p * max(len(encoded), 1))(*encoded), encoded


class CrossRank:
    """A loaded model. Thread-safe: score/rank may be called from several threads at once
    (ctypes releases the GIL during every call into a CDLL)."""

    def __init__(self, model_dir, device="auto", cuda_device_index=0, max_length=0, batch_tokens=0, lib=None):
        self._lib = lib if isinstance(lib, ctypes.CDLL) else load_library(lib)
        params = self._lib.crossrank_model_params_default()
        if device not in DEVICES:
            raise ValueError(f"device must be one of {sorted(DEVICES)}, got {device!r}")
        params.device = DEVICES[device]
        params.cuda_device_index = cuda_device_index
        params.max_length = max_length
        params.batch_tokens = batch_tokens
        handle = ctypes.c_void_p()
        self._check(self._lib.crossrank_model_load(_utf8(os.fspath(model_dir)), ctypes.byref(params),
                                                   ctypes.byref(handle)))
        self._handle = handle

    def _check(self, status):
        if status != OK:
            message = self._lib.crossrank_last_error()
            raise CrossRankError(status, self._lib.crossrank_status_name(status).decode(),
                                 message.decode("utf-8", "replace") if message else "")

    def close(self):
        """Frees the model (also done by `with` and by garbage collection). Idempotent."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            self._lib.crossrank_model_free(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def info(self):
        info = ModelInfo()
        self._check(self._lib.crossrank_model_get_info(self._handle, ctypes.byref(info)))
        return {name: getattr(info, name) for name, _ in ModelInfo._fields_}

    def score(self, pairs):
        """Scores (query, document) pairs; returns (logits, scores), lists in input order."""
        pairs = list(pairs)
        n = len(pairs)
        queries, _keep_q = _strings(q for q, _ in pairs)
        documents, _keep_d = _strings(d for _, d in pairs)
        logits = (ctypes.c_float * max(n, 1))()
        scores = (ctypes.c_float * max(n, 1))()
        self._check(self._lib.crossrank_score(self._handle, n, queries, documents, logits, scores))
        return list(logits[:n]), list(scores[:n])

    def rank(self, query, documents):
        """Ranks documents against query; returns [(index, score)], best first."""
        documents = list(documents)
        n = len(documents)
        docs, _keep = _strings(documents)
        order = (ctypes.c_size_t * max(n, 1))()
        scores = (ctypes.c_float * max(n, 1))()
        self._check(self._lib.crossrank_rank(self._handle, _utf8(query), n, docs, order, scores))
        return list(zip(order[:n], scores[:n]))


def _expect_error(name, status, fn):
    """Runs fn, which must raise CrossRankError with `status`; prints a check line."""
    try:
        fn()
    except CrossRankError as e:
        ok = e.status == status and e.message != ""
        print(f"check\t{name}\t{e.status_name}\t{'ok' if ok else 'FAILED'}\t{e.message}")
        return ok
    print(f"check\t{name}\tCROSSRANK_OK\tFAILED\t-")
    return False


def main(argv):
    import argparse

    ap = argparse.ArgumentParser(description="Score and rank through the crossrank C ABI.")
    ap.add_argument("model_dir")
    ap.add_argument("--device", default="auto", choices=sorted(DEVICES))
    ap.add_argument("--pairs", help="query<TAB>document lines")
    ap.add_argument("--lib", help="path to libcrossrank.so [$CROSSRANK_LIB]")
    args = ap.parse_args(argv)

    if args.pairs:
        with open(args.pairs, encoding="utf-8", newline="") as f:
            lines = [line.rstrip("\n").removesuffix("\r") for line in f]
        pairs = [tuple(line.split("\t")) for line in lines]
        if any(len(p) != 2 for p in pairs):
            sys.exit(f"{args.pairs}: expected query<TAB>document lines")
    else:
        pairs = [("what is the capital of China?", "Beijing is the capital of the People's Republic of China."),
                 ("what is the capital of China?", "The giant panda is a bear species endemic to China."),
                 ("how to implement quick sort in python?",
                  "Quicksort picks a pivot and partitions the array around it, then recurses."),
                 ("¿cuál es la capital de Francia?", "París es la capital de Francia.")]

    lib = load_library(args.lib)
    ok = True
    with CrossRank(args.model_dir, device=args.device, lib=lib) as model:
        info = model.info()
        print(f"crossrank {lib.crossrank_version().decode()}: {args.model_dir}, {info}", file=sys.stderr)
        logits, scores = model.score(pairs)
        for i, (logit, score) in enumerate(zip(logits, scores)):
            print(f"pair\t{i}\t{logit:.9g}\t{score:.9g}")
        if pairs:
            for position, (index, score) in enumerate(model.rank(pairs[0][0], [d for _, d in pairs])):
                print(f"rank\t{position}\t{index}\t{score:.9g}")

        ok &= _expect_error("load-missing-dir", ERR_MODEL,
                            lambda: CrossRank("/nonexistent/crossrank-model", device="cpu", lib=lib))
        ok &= _expect_error("load-max-length-too-large", ERR_INVALID_ARGUMENT,
                            lambda: CrossRank(args.model_dir, device="cpu", max_length=1 << 30, lib=lib))
        ok &= _expect_error("score-invalid-utf8", ERR_INVALID_ARGUMENT,
                            lambda: model.score([("query", b"\xff\xfe not UTF-8")]))
        ok &= _expect_error("rank-invalid-utf8-query", ERR_INVALID_ARGUMENT,
                            lambda: model.rank(b"\xc3", ["a document"]))
        empty = model.score([]) == ([], []) and model.rank("query", []) == []
        print(f"check\tzero-pairs\tCROSSRANK_OK\t{'ok' if empty else 'FAILED'}\t-")
        ok &= empty
        stale = CrossRank(args.model_dir, device="cpu", lib=lib)
        handle = stale._handle
        stale.close()
        stale._handle = handle  # use after free, on purpose: must be rejected, not crash
        ok &= _expect_error("score-freed-model", ERR_INVALID_ARGUMENT, lambda: stale.score([("q", "d")]))
        stale._handle = None
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
