#!/usr/bin/env python3
"""libconure from Python through ctypes (standard library only).

A thin example of the FFI story: every public function takes handles, flat
arrays and scalars, so a binding is a list of prototypes.  It trains a small
next-item model on cyclic toy sequences, finishes it, asks for the top 5
items of a user, checks an error path, and exits non-zero on any failure.

    python3 examples/python/conure_ctypes.py [path/to/libconure.so.0]
"""
import ctypes as C
import sys

lib = C.CDLL(sys.argv[1] if len(sys.argv) > 1 else "libconure.so.0")

P = C.c_void_p
I32P = C.POINTER(C.c_int32)
FP = C.POINTER(C.c_float)
PROTOS = {
    "conure_version_string": (C.c_char_p, []),
    "conure_last_error": (C.c_char_p, []),
    "conure_status_string": (C.c_char_p, [C.c_int]),
    "conure_options_create": (C.c_int, [C.POINTER(P)]),
    "conure_options_free": (None, [P]),
    "conure_options_set_int": (C.c_int, [P, C.c_char_p, C.c_int64]),
    "conure_options_set_float": (C.c_int, [P, C.c_char_p, C.c_double]),
    "conure_options_set_string": (C.c_int, [P, C.c_char_p, C.c_char_p]),
    "conure_model_create": (C.c_int, [P, C.POINTER(P)]),
    "conure_model_free": (None, [P]),
    "conure_model_add_task": (C.c_int, [P, C.c_int, C.c_int32, P, I32P]),
    "conure_model_train_step": (C.c_int, [P, C.c_int32, I32P, C.c_int32, C.c_int32, I32P, FP]),
    "conure_model_prune": (C.c_int, [P, C.c_int32]),
    "conure_model_finish_task": (C.c_int, [P, C.c_int32]),
    "conure_model_top_k": (C.c_int, [P, C.c_int32, I32P, C.c_int32, C.c_int32, C.c_int32,
                                     C.c_uint32, I32P, FP, C.c_size_t]),
}
for name, (res, args) in PROTOS.items():
    fn = getattr(lib, name)
    fn.restype, fn.argtypes = res, args

CONURE_TASK_NEXT_ITEM = 1


def check(status, what):
    if status != 0:
        raise SystemExit("%s failed: %s (%s)" % (what, lib.conure_status_string(status).decode(),
                                                lib.conure_last_error().decode()))


def main():
    V, L, B = 21, 8, 16
    opts = P()
    check(lib.conure_options_create(C.byref(opts)), "options_create")
    check(lib.conure_options_set_int(opts, b"vocab_size", V), "vocab_size")
    check(lib.conure_options_set_int(opts, b"channels", 16), "channels")
    check(lib.conure_options_set_string(opts, b"dilations", b"1,2"), "dilations")
    model = P()
    check(lib.conure_model_create(opts, C.byref(model)), "model_create")
    lib.conure_options_free(opts)
    topts = P()
    check(lib.conure_options_create(C.byref(topts)), "options_create")
    check(lib.conure_options_set_string(topts, b"loss", b"softmax"), "loss")
    check(lib.conure_options_set_float(topts, b"lr", 0.003), "lr")
    task = C.c_int32()
    check(lib.conure_model_add_task(model, CONURE_TASK_NEXT_ITEM, V, topts, C.byref(task)),
          "add_task")
    lib.conure_options_free(topts)

    # toy users: item i is always followed by item i+1 (mod 20)
    def batch(step):
        rows = [[1 + (step * 3 + b + j) % (V - 1) for j in range(L)] for b in range(B)]
        return (C.c_int32 * (B * L))(*[x for r in rows for x in r])

    loss = C.c_float()
    for step in range(150):
        check(lib.conure_model_train_step(model, task, batch(step), B, L, None, C.byref(loss)),
              "train_step")
    check(lib.conure_model_prune(model, task), "prune")
    for step in range(50):
        check(lib.conure_model_train_step(model, task, batch(step), B, L, None, C.byref(loss)),
              "train_step")
    check(lib.conure_model_finish_task(model, task), "finish_task")

    history = (C.c_int32 * 4)(5, 6, 7, 8)
    ids = (C.c_int32 * 5)()
    scores = (C.c_float * 5)()
    check(lib.conure_model_top_k(model, task, history, 1, 4, 5, 0, ids, scores, 5), "top_k")
    print("libconure %s: loss %.3f, after 5 6 7 8 the top 5 are %s"
          % (lib.conure_version_string().decode(), loss.value, list(ids)))
    if ids[0] != 9:
        raise SystemExit("expected item 9 first, got %d" % ids[0])

    # an error comes back as a status and a message naming the argument
    bad = (C.c_int32 * 4)(5, 6, 99, 8)
    st = lib.conure_model_top_k(model, task, bad, 1, 4, 5, 0, ids, scores, 5)
    msg = lib.conure_last_error().decode()
    print("bad item id ->", lib.conure_status_string(st).decode() + ":", msg)
    if st == 0 or "items[0][2]" not in msg:
        raise SystemExit("expected an out-of-range error naming items[0][2]")
    lib.conure_model_free(model)
    print("ok")


if __name__ == "__main__":
    main()
