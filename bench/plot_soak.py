#!/usr/bin/env python3
"""Draws the CSV of bench/soak.sh as a PNG: the gateway's RSS and open file descriptors over time, each with the
+-5 % band around its post-warm-up median, and the warm-up shaded; under the fds, the part that is not connections
(with its own band: the one the verdict holds it to) and the client and pool connections.

    python3 bench/plot_soak.py target/soak/soak.csv docs/img/soak.png [--warmup-percent 20] [--title TEXT]

matplotlib comes from PyPI into a virtual environment under target/ (target/plot-venv), never into the system:
when it cannot be imported, this script creates that venv, installs the pinned version and runs itself again there.
"""

import argparse
import csv
import os
import statistics
import subprocess
import sys
import venv

MATPLOTLIB = "matplotlib==3.11.2"
BAND = 0.05
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ensure_matplotlib():
    try:
        import matplotlib  # noqa: F401  (only whether it imports)

        return
    except ImportError:
        pass
    if os.environ.get("PLOT_SOAK_IN_VENV"):
        sys.exit("plot_soak: matplotlib is still missing inside the venv")
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    env_dir = os.path.join(target, "plot-venv")
    python = os.path.join(env_dir, "bin", "python3")
    if not os.path.exists(python):
        print(f"plot_soak: creating {env_dir} with {MATPLOTLIB} from PyPI", file=sys.stderr)
        venv.create(env_dir, with_pip=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", MATPLOTLIB], check=True)
    os.execve(python, [python, *sys.argv], dict(os.environ, PLOT_SOAK_IN_VENV="1"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("png")
    parser.add_argument("--warmup-percent", type=float, default=20)
    parser.add_argument("--title", default="Portcullis endurance soak (bench/soak.sh)")
    args = parser.parse_args()
    ensure_matplotlib()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(args.csv, newline="") as source:
        rows = [{key: float(value) for key, value in row.items()} for row in csv.DictReader(source)]
    if not rows:
        sys.exit("plot_soak: the CSV has no rows")
    minutes = [row["elapsed_s"] / 60 for row in rows]
    duration = rows[-1]["elapsed_s"] / 60
    warmup = duration * args.warmup_percent / 100
    after = [row for row in rows if row["elapsed_s"] / 60 >= warmup] or rows

    figure, (rss_axis, fd_axis) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, dpi=100)
    panels = [
        (rss_axis, "rss_kb", 1 / 1024, "RSS (MiB)", "tab:blue"),
        (fd_axis, "fds", 1, "open file descriptors", "tab:green"),
    ]
    for axis, key, scale, label, colour in panels:
        values = [row[key] * scale for row in rows]
        median = statistics.median(row[key] * scale for row in after)
        axis.axvspan(0, warmup, color="0.9", label=f"warm-up (first {args.warmup_percent:.0f} %)")
        axis.axhspan(median * (1 - BAND), median * (1 + BAND), color=colour, alpha=0.15,
                     label="±5 % of the post-warm-up median")
        axis.axhline(median, color=colour, linewidth=0.8, linestyle="--")
        inside = all(abs(row[key] * scale - median) <= BAND * median for row in after)
        verdict = "within" if inside else "NOT within"
        axis.plot(minutes, values, color=colour, linewidth=1.5, label=f"{label}: {verdict} the band after warm-up")
        axis.set_ylabel(label)
        axis.set_ylim(0, max(max(values), median * (1 + BAND)) * 1.15)
        axis.grid(True, linewidth=0.3)
        axis.legend(loc="lower right", fontsize=8)
    if "other_fds" in rows[0]:
        others = [row["other_fds"] for row in rows]
        other_median = statistics.median(row["other_fds"] for row in after)
        fd_axis.axhspan(other_median * (1 - BAND), other_median * (1 + BAND), color="0.5", alpha=0.2)
        fd_axis.plot(minutes, others, color="0.3", linewidth=1.2, label="of which not connections (±5 % band)")
        fd_axis.plot(minutes, [row["client_conns"] for row in rows], color="tab:orange", linewidth=0.8,
                     label="client connections")
        fd_axis.plot(minutes, [row["upstream_conns"] for row in rows], color="tab:purple", linewidth=0.8,
                     label="upstream pool")
        fd_axis.plot(minutes, [row["idp_conns"] for row in rows], color="tab:red", linewidth=0.8,
                     label="provider pool")
        fd_axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), fontsize=7, ncol=3)
    fd_axis.set_xlabel("minutes")
    fd_axis.set_xlim(0, duration)
    last = rows[-1]
    figure.suptitle(
        f"{args.title}\n{last['requests']:.0f} requests, {last['logins']:.0f} logins, {last['refreshes']:.0f} refreshes,"
        f" {last['signouts']:.0f} sign-outs, {last['errors']:.0f} errors in {duration:.3g} min",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(args.png)
    print(f"wrote {args.png}", file=sys.stderr)


if __name__ == "__main__":
    main()
