#!/usr/bin/env python3
"""Checks of the `conure` program's results JSON, used by tests/test_cli.sh.

  test_cli_check.py results R.json N_TASKS METHOD[,METHOD...]
      structure of every listed method, and Conure's no-forgetting property:
      every column of Conure's matrix is EXACTLY constant down its rows, and
      equal to the task's value in every later evaluation stage.
  test_cli_check.py same-columns A.json B.json N_COLS
      the first N_COLS columns of Conure's matrix in A and B are exactly equal
      (row by row where both have the row).
  test_cli_check.py same-final A.json B.json METHOD_A METHOD_B
      the final metrics of every task are exactly equal.
  test_cli_check.py get R.json KEY[.KEY...]
      prints a value.
"""
import json
import math
import sys


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail("%s: cannot read JSON: %s" % (path, e))


def is_num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


ITEM_KEYS = ["hr@5", "mrr@5", "ndcg@5", "hr@10", "mrr@10", "ndcg@10", "hr@20", "mrr@20", "ndcg@20"]


def check_results(path, n_tasks, methods):
    r = load(path)
    for k in ["program", "command", "library_version", "preset", "seed", "threads", "backend",
              "wall_time_s", "settings", "dataset", "methods"]:
        if k not in r:
            fail("%s: top-level key '%s' missing" % (path, k))
    if r["program"] != "conure":
        fail("program is %r" % r["program"])
    if not isinstance(r["library_version"], str) or not r["library_version"]:
        fail("library_version empty")
    if not is_num(r["wall_time_s"]) or r["wall_time_s"] <= 0:
        fail("wall_time_s %r" % r["wall_time_s"])
    ds = r["dataset"]
    if len(ds["tasks"]) < n_tasks:
        fail("dataset lists %d tasks, expected >= %d" % (len(ds["tasks"]), n_tasks))
    kinds = [t["kind"] for t in ds["tasks"]]
    if kinds[0] != "next_item":
        fail("T1 is %s" % kinds[0])
    got = sorted(r["methods"].keys())
    if got != sorted(methods):
        fail("methods %s, expected %s" % (got, sorted(methods)))
    for name, m in r["methods"].items():
        tasks = m.get("tasks")
        if not isinstance(tasks, list) or len(tasks) != n_tasks:
            fail("%s: %s tasks, expected %d" % (name, None if tasks is None else len(tasks), n_tasks))
        sp = m.get("stored_parameters")
        if not (isinstance(sp, int) and sp > 0):
            fail("%s: stored_parameters %r" % (name, sp))
        for i, t in enumerate(tasks):
            if t["task"] != i + 1 or t["kind"] != kinds[i]:
                fail("%s: task entry %d is %r" % (name, i + 1, t))
            mt = t["metrics"]
            if t["kind"] == "classification":
                keys = ["accuracy"]
                if t["main_metric"] != "accuracy" or t["main"] != mt["accuracy"]:
                    fail("%s T%d: main is not accuracy" % (name, i + 1))
            else:
                keys = ITEM_KEYS
                if t["main_metric"] != "hr@5" or t["main"] != mt["hr@5"]:
                    fail("%s T%d: main is not hr@5" % (name, i + 1))
            for k in keys:
                v = mt.get(k)
                if not is_num(v) or v < 0 or v > 1:
                    fail("%s T%d: metric %s = %r" % (name, i + 1, k, v))
            if not (isinstance(mt.get("n"), int) and mt["n"] > 0):
                fail("%s T%d: n = %r" % (name, i + 1, mt.get("n")))
        if name in ("conure", "sinmoall"):
            mat = m.get("matrix")
            if not isinstance(mat, list) or len(mat) != n_tasks:
                fail("%s: matrix missing or not %d rows" % (name, n_tasks))
            for j, row in enumerate(mat):
                if len(row) != n_tasks:
                    fail("%s: matrix row %d has %d columns" % (name, j + 1, len(row)))
                for i, v in enumerate(row):
                    if i > j and v is not None:
                        fail("%s: matrix[%d][%d] = %r, expected null" % (name, j + 1, i + 1, v))
                    if i <= j and not is_num(v):
                        fail("%s: matrix[%d][%d] = %r, expected a number" % (name, j + 1, i + 1, v))
            for i in range(n_tasks):
                if mat[n_tasks - 1][i] != tasks[i]["main"]:
                    fail("%s: last matrix row, column %d (%r) is not the final T%d value (%r)"
                         % (name, i + 1, mat[n_tasks - 1][i], i + 1, tasks[i]["main"]))
        elif "matrix" in m:
            fail("%s: unexpected matrix" % name)
    if "conure" in r["methods"]:
        c = r["methods"]["conure"]
        mat = c["matrix"]
        for i in range(n_tasks):
            col = [mat[j][i] for j in range(i, n_tasks)]
            if any(v != col[0] for v in col):
                fail("conure forgot: column T%d of the matrix is not constant: %r" % (i + 1, col))
        # every evaluation stage after task i was finished sees the same value
        for st in c.get("stages", []):
            learned = st["task"] if st["stage"] in ("retrained", "loaded") else st["task"] - 1
            for i in range(min(learned, len(st["main"]))):
                if st["main"][i] != mat[i][i]:
                    fail("conure: stage %s of T%d shows T%d = %r, not %r"
                         % (st["stage"], st["task"], i + 1, st["main"][i], mat[i][i]))
        cap = c.get("capacity")
        if not cap or len(cap.get("owned", [])) != n_tasks or cap["free"] < 0:
            fail("conure: capacity %r" % cap)
        if "stages" not in c or len(c["stages"]) < 3:
            fail("conure: fewer than 3 evaluation stages")
    print("ok: %s (%d tasks, methods %s)" % (path, n_tasks, ",".join(sorted(methods))))


def same_columns(a, b, n_cols):
    ma = load(a)["methods"]["conure"]["matrix"]
    mb = load(b)["methods"]["conure"]["matrix"]
    for j in range(min(len(ma), len(mb))):
        for i in range(min(n_cols, j + 1)):
            if ma[j][i] != mb[j][i]:
                fail("matrix[%d][%d]: %r in %s, %r in %s" % (j + 1, i + 1, ma[j][i], a, mb[j][i], b))
    print("ok: %s and %s agree on %d columns" % (a, b, n_cols))


def same_final(a, b, meth_a, meth_b):
    ta = load(a)["methods"][meth_a]["tasks"]
    tb = load(b)["methods"][meth_b]["tasks"]
    if len(ta) != len(tb):
        fail("%d tasks vs %d" % (len(ta), len(tb)))
    for x, y in zip(ta, tb):
        if x["metrics"] != y["metrics"]:
            fail("T%d: %r vs %r" % (x["task"], x["metrics"], y["metrics"]))
    print("ok: final metrics of %s:%s and %s:%s are identical" % (a, meth_a, b, meth_b))


def get(path, keys):
    v = load(path)
    for k in keys.split("."):
        v = v[int(k)] if isinstance(v, list) else v[k]
    print(v)


def main(argv):
    if len(argv) >= 5 and argv[1] == "results":
        check_results(argv[2], int(argv[3]), argv[4].split(","))
    elif len(argv) == 5 and argv[1] == "same-columns":
        same_columns(argv[2], argv[3], int(argv[4]))
    elif len(argv) == 6 and argv[1] == "same-final":
        same_final(argv[2], argv[3], argv[4], argv[5])
    elif len(argv) == 4 and argv[1] == "get":
        get(argv[2], argv[3])
    else:
        fail("usage: see the docstring")


if __name__ == "__main__":
    main(sys.argv)
