"""Turn pytest-benchmark JSON files into the benchmark table and plot.

    python benchmarks/report.py bench-out/core.json [bench-out/adapter.json ...] \
        [--plot bench-out/bench.png] [--markdown bench-out/table.md]

Rows are grouped by ``extra_info['case']``.  Each ratio compares two
implementations timed in the same process (from each one's minimum time), so
it holds on a noisy machine even when absolute times do not; the core's
ratios come from the interleaved measurement its ``ours`` test records
(``extra_info['interleaved']``) when there is one: ``vs numpy`` and
``ours/floor`` compare the core (``ours``, NumPy 2 venv) with NumPy and the
floor, ``rows/floor`` shows how far the kernel's copies of random rows,
indices given (``cases.py``), are from the floor; ``vs reference`` compares
the Theano adapter with the PyMC3 reference graph (PyMC3 venv), from the
interleaved measurement its adapter test records
(``extra_info['interleaved_adapter']``) when there is one.
"""
import argparse
import json
import platform
import textwrap
from collections import defaultdict

def load(paths):
    rows = defaultdict(dict)
    meta = defaultdict(dict)
    machine = None
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        # The core's record names the machine (and its NumPy 2); the
        # adapters' venvs add their NumPy versions (see describe).
        info = doc.get("machine_info") or {}
        if machine is None or "core" in path.rsplit("/", 1)[-1]:
            numpys = (machine or {}).get("numpys", [])
            machine = dict(info, numpys=numpys)
        record = info.get("mbcore", {})
        if record.get("numpy") and record["numpy"] not in machine["numpys"]:
            machine["numpys"].append(record["numpy"])
        for b in doc["benchmarks"]:
            info = b.get("extra_info", {})
            case, impl = info.get("case"), info.get("impl")
            if case is None or impl is None:
                continue
            key = (info.get("kind", "grid"), case)
            rows[key][impl] = b["stats"]["min"]
            meta[key].update({k: v for k, v in info.items() if k not in ("impl",)})
            if "peak_rss_mb" in info:
                meta[key][f"peak_{impl}"] = info["peak_rss_mb"]
            if "interleaved" in info:
                meta[key]["interleaved"] = info["interleaved"]
    return rows, meta, machine


IMPLS = ["ours", "numpy", "floor", "rows", "adapter", "reference"]


def fmt_time(t):
    if t is None:
        return "-"
    if t < 1e-3:
        return f"{t * 1e6:.1f} us"
    return f"{t * 1e3:.2f} ms"


def table(rows, meta):
    head = ["kind", "case", "ours", "numpy", "vs numpy", "floor", "ours/floor",
            "rows/floor", "adapter", "reference", "vs reference", "RSS growth"]
    lines = [head]
    for (kind, case) in sorted(rows, key=lambda k: (k[0], _order(meta[k]), k[1])):
        if kind == "threads":
            continue
        r = rows[(kind, case)]
        adapter = r.get("adapter")
        q = meta[(kind, case)].get("interleaved") or r   # times the core's ratios use
        qa = meta[(kind, case)].get("interleaved_adapter") or r   # and the adapter's
        ours = q.get("ours")
        peaks = [f"{impl} {meta[(kind, case)][f'peak_{impl}']:.0f} MB" for impl in IMPLS
                 if f"peak_{impl}" in meta[(kind, case)]]
        lines.append([
            kind, case, fmt_time(r.get("ours")), fmt_time(r.get("numpy")),
            f"{q['numpy'] / ours:.2f}x" if ours and "numpy" in q else "-",
            fmt_time(r.get("floor")),
            f"{ours / q['floor']:.2f}" if ours and "floor" in q else "-",
            f"{q['rows'] / q['floor']:.2f}" if "rows" in q and "floor" in q else "-",
            fmt_time(adapter), fmt_time(r.get("reference")),
            f"{qa['reference'] / qa['adapter']:.2f}x"
            if qa.get("adapter") and "reference" in qa else "-",
            ", ".join(peaks) or "-",
        ])
    return lines


def scaling(rows, meta):
    """The thread-scaling table: per case and thread count, ours and the
    contiguous floor on as many threads, and their ratio."""
    lines = [["case", "threads", "ours", "floor", "ours/floor"]]
    keys = [k for k in rows if k[0] == "threads"]
    for k in sorted(keys, key=lambda k: (_order(meta[k]), meta[k]["threads"])):
        r, m = rows[k], meta[k]
        base = k[1].rsplit(" threads=", 1)[0]
        lines.append([base, str(m["threads"]), fmt_time(r.get("ours")), fmt_time(r.get("floor")),
                      f"{r['ours'] / r['floor']:.2f}" if "ours" in r and "floor" in r else "-"])
    return lines


def plot_threads(rows, meta, path, title=""):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = defaultdict(lambda: defaultdict(list))
    for k in rows:
        if k[0] != "threads":
            continue
        base = k[1].rsplit(" threads=", 1)[0]
        for impl, t in rows[k].items():
            series[base][impl].append((meta[k]["threads"], t))
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for i, (base, impls) in enumerate(sorted(series.items())):
        color = f"C{i}"
        for impl, style in (("ours", "-o"), ("floor", "--_")):
            pts = sorted(impls.get(impl, []))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] * 1e6 for p in pts], style, color=color,
                        label=f"{base}: {impl}")
    counts = sorted({meta[k]["threads"] for k in rows if k[0] == "threads"})
    ax.set(xscale="log", yscale="log", xlabel="threads", ylabel="time per batch (us)",
           title="Thread scaling: ours against the contiguous copy of the same bytes")
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.minorticks_off()
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        fig.suptitle(textwrap.fill(title, 100), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _order(m):
    return (m.get("n", 0), m.get("width", 0), m.get("batch", 0))


def render(lines, markdown=False):
    if markdown:
        out = ["| " + " | ".join(lines[0]) + " |",
               "|" + "|".join("---" for _ in lines[0]) + "|"]
        out += ["| " + " | ".join(row) + " |" for row in lines[1:]]
        return "\n".join(out)
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(c.rjust(w) if i > 1 else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths)))
                     for row in lines)


def describe(machine):
    if not machine:
        return platform.platform()
    if "mbcore" in machine:       # benchmarks/machine.py's record
        info = machine["mbcore"]
        numpys = [info["numpy"]] + [v for v in machine.get("numpys", []) if v != info["numpy"]]
        return (f"{info['cpu_model']}, {info['cpus_usable']} of {info['cpus_host']} CPUs "
                f"usable, {info['platform']}, Python {info['python']}, NumPy "
                f"{' / '.join(numpys)}, {info['simd']} draw")
    cpu = machine.get("cpu", {})
    return (f"{cpu.get('brand_raw', machine.get('processor', '?'))}, "
            f"{cpu.get('count', '?')} cores, {machine.get('system')} "
            f"{machine.get('release')}, Python {machine.get('python_version')}")


def plot(rows, meta, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = {k: v for k, v in rows.items() if k[0] == "grid"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    styles = {"ours": ("tab:blue", "o"), "numpy": ("tab:orange", "s"),
              "floor": ("tab:gray", "_"), "rows": ("tab:green", "+"),
              "adapter": ("tab:cyan", "x"),
              "reference": ("tab:red", "^")}
    for impl, (color, marker) in styles.items():
        pts = [(meta[k]["batch"], meta[k]["width"], v[impl]) for k, v in grid.items()
               if impl in v and "batch" in meta[k]]
        if not pts:
            continue
        axes[0].scatter([p[0] for p in pts], [p[2] * 1e6 for p in pts], color=color,
                        marker=marker, label=impl, s=40)
        axes[1].scatter([p[1] for p in pts], [p[2] * 1e9 / p[0] for p in pts], color=color,
                        marker=marker, label=impl, s=40)
    for k in grid:
        m = meta[k]
        if "ours" in grid[k] and "batch" in m:
            axes[0].annotate(f"n={m['n']:.0e}, w={m['width']}",
                             (m["batch"], grid[k]["ours"] * 1e6),
                             fontsize=6, xytext=(4, -8), textcoords="offset points")
    axes[0].set(xscale="log", yscale="log", xlabel="batch size (rows)",
                ylabel="time per batch (us)", title="Time per batch")
    axes[1].set(xscale="log", yscale="log", xlabel="row width (float64 values)",
                ylabel="time per row (ns)", title="Time per row")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("ours: mbcore next(mb); numpy: np.take(data, rng.integers(...)); "
                 "floor: contiguous copy;\nrows: our copy loop on given indices; "
                 "adapter: theano.function of our Minibatch; reference: PyMC3 doc's graph",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+")
    ap.add_argument("--plot")
    ap.add_argument("--markdown")
    ap.add_argument("--threads-plot")
    args = ap.parse_args(argv)
    rows, meta, machine = load(args.json)
    lines = table(rows, meta)
    threads = scaling(rows, meta)
    print(f"machine: {describe(machine)}")
    print(render(lines))
    if len(threads) > 1:
        print(render(threads))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"Machine: {describe(machine)}\n\n{render(lines, markdown=True)}\n")
            if len(threads) > 1:
                f.write(f"\nThread scaling, same machine:\n\n{render(threads, markdown=True)}\n")
    if args.plot:
        plot(rows, meta, args.plot)
        print(f"plot: {args.plot}")
    if args.threads_plot and len(threads) > 1:
        plot_threads(rows, meta, args.threads_plot, describe(machine))
        print(f"plot: {args.threads_plot}")


if __name__ == "__main__":
    main()
