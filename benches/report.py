#!/usr/bin/env python3
"""The report of benches/load.sh: Markdown tables and, with --publish, the
block of docs/performance.md between its marker comments and the two plots
(docs/performance-load.svg, docs/performance-memory.svg).

    benches/report.py WORK CLK_TCK [--publish]

WORK is load.sh's scratch directory: meta.tsv (commit, date, machine, what
was skipped), results.tsv (one line per target and round), and when measured
latency.tsv (oha), memory.tsv (one line per gateway and round) and idle.json
(benches/idle_memory.py). The SVGs are written by hand, standard library only.
"""
import json
import os
import statistics
import sys
from collections import OrderedDict
from xml.sax.saxutils import escape

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "performance.md")
LOAD_SVG = "performance-load.svg"
MEMORY_SVG = "performance-memory.svg"
BEGIN = "<!-- BEGIN benches/load.sh output: generated, a rerun replaces everything up to END -->"
END = "<!-- END benches/load.sh output -->"


def ms(text):
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def load(work, clk):
    meta = {"skipped": []}
    for row in read_tsv(os.path.join(work, "meta.tsv")):
        key, value = row[0], row[1] if len(row) > 1 else ""
        if key == "skipped":
            meta["skipped"].append(value)
        else:
            meta[key] = value
    runs = OrderedDict()
    for key, name, rps, p50, p99, ticks, requests in read_tsv(os.path.join(work, "results.tsv")):
        runs.setdefault(key, (name, []))[1].append((float(rps), ms(p50), ms(p99), int(ticks), int(requests)))
    load_rows = OrderedDict()
    for key, (name, rounds) in runs.items():
        cpu = [t * 1e6 / clk / r for (_, _, _, t, r) in rounds]
        load_rows[key] = {
            "name": name,
            "rps": statistics.median(r[0] for r in rounds),
            "p50": statistics.median(r[1] for r in rounds),
            "p99": statistics.median(r[2] for r in rounds),
            "cpu": None if key == "direct" else statistics.median(cpu),
            "rounds": len(rounds),
        }
    latency = [(key, name, float(p50), float(p99)) for key, name, p50, p99 in read_tsv(os.path.join(work, "latency.tsv"))]
    memory = OrderedDict()
    for variant, idle, loaded, peak, misses, lookups, settled in read_tsv(os.path.join(work, "memory.tsv")):
        memory.setdefault(variant, []).append((int(idle), int(loaded), int(peak), misses, lookups, int(settled)))
    idle_path = os.path.join(work, "idle.json")
    idle = json.load(open(idle_path)) if os.path.exists(idle_path) else None
    return meta, load_rows, latency, memory, idle


def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "—"


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def markdown(meta, rows, latency, memory, idle, plots):
    out = []
    dirty = " with uncommitted changes" if meta.get("dirty") == "yes" else ""
    features = f", built with `--features {meta['features']}`" if meta.get("features") else ""
    rounds = next(iter(rows.values()))["rounds"] if rows else 0
    knobs = [f"ROUNDS={rounds}", f"DURATION={meta.get('duration', '?')}"]
    knobs += [f'{k.upper()}="{meta[k]}"' for k in ("features", "allocators") if meta.get(k)]
    knobs += [f"{k.upper()}=0" for k in ("scaling", "extras") if meta.get(k) == "0"]
    out.append(f"`{' '.join(knobs)} benches/load.sh`")
    out.append("")
    out.append(
        f"Measured at commit `{meta.get('commit', 'unknown')}`{dirty}{features} on {meta.get('date', '?')}: "
        f"{meta.get('cores', '?')} cores ({meta.get('cpu', '?')}), {meta.get('kernel', '?')}. "
        f"Medians of {rounds} interleaved rounds of {meta.get('duration', '?')} s, "
        f"`wrk -t1 -c{meta.get('connections', '?')}`."
    )
    if meta.get("note"):
        out[-1] += " " + meta["note"]
    if meta["skipped"]:
        out[-1] += " Skipped in this run: " + "; ".join(meta["skipped"]) + "."
    out.append("")
    if plots.get("load"):
        out += [f"![req/s and proxy CPU per request, per target]({LOAD_SVG})", ""]

    nginx = rows.get("nginx", {}).get("rps")
    hajwt = rows.get("haproxy_jwt", {}).get("rps")
    out.append("| target | req/s | p50 ms | p99 ms | proxy CPU µs/req | vs nginx | vs HAProxy+JWT |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows.values():
        cpu = "—" if row["cpu"] is None else f"{row['cpu']:.1f}"
        out.append(f"| {row['name']} | {row['rps']:,.0f} | {row['p50']:.2f} | {row['p99']:.2f} | {cpu} | "
                   f"{ratio(row['rps'], nginx)} | {ratio(row['rps'], hajwt)} |")

    pairs = [(one, two) for one, two in (("cache_on", "cache_on_2w"), ("nginx", "nginx_2w")) if one in rows and two in rows]
    if pairs:
        out += ["", "| scaling: 1 → 2 workers | req/s, 1 worker | req/s, 2 workers | ratio | CPU µs/req, 1 → 2 workers |",
                "| --- | ---: | ---: | ---: | ---: |"]
        for one, two in pairs:
            a, b = rows[one], rows[two]
            out.append(f"| {b['name']} | {a['rps']:,.0f} | {b['rps']:,.0f} | {ratio(b['rps'], a['rps'])} | "
                       f"{a['cpu']:.1f} → {b['cpu']:.1f} |")
        if len(pairs) == 2:
            j, n = rows["cache_on_2w"], rows["nginx_2w"]
            out += ["", f"With 2 workers jwtgate (cache on) serves {ratio(j['rps'], n['rps'])} of nginx's req/s "
                        f"and spends {ratio(j['cpu'], n['cpu'])} its CPU per request."]

    allocators = [k for k in rows if k.startswith("alloc_")]
    if allocators:
        base = rows.get("alloc_glibc")
        base_mem = memory.get("glibc")
        out += ["", "| allocator (cache on) | req/s | proxy CPU µs/req | CPU vs glibc | RSS idle | RSS, 1000 conns × 10 000 tokens | RSS vs glibc |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for key in allocators:
            row, variant = rows[key], key[len("alloc_"):]
            idle_kib = loaded_kib = None
            if variant in memory:
                idle_kib = statistics.median(m[0] for m in memory[variant])
                loaded_kib = statistics.median(m[1] for m in memory[variant])
            base_loaded = statistics.median(m[1] for m in base_mem) if base_mem else None
            out.append(f"| {variant} | {row['rps']:,.0f} | {row['cpu']:.1f} | "
                       f"{ratio(row['cpu'], base['cpu'] if base else None)} | "
                       f"{mib(idle_kib) if idle_kib else '—'} | {mib(loaded_kib) if loaded_kib else '—'} | "
                       f"{ratio(loaded_kib, base_loaded)} |")

    if latency:
        direct = next((p50 for key, _, p50, _ in latency if key == "direct"), None)
        out += ["", "| at a fixed 5 000 req/s, 64 connections (oha) | p50 ms | p99 ms | p50 added over direct |",
                "| --- | ---: | ---: | ---: |"]
        for _, name, p50, p99 in latency:
            added = f"{p50 - direct:+.3f}" if direct is not None else "—"
            out.append(f"| {name} | {p50:.3f} | {p99:.3f} | {added} |")

    if memory:
        out += ["", "| jwtgate memory (median of rounds) | RSS idle | RSS, 1000 keep-alive connections × 10 000 distinct tokens | peak | cache misses / lookups | then 1000 idle keep-alive connections, settled 3 s |",
                "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for variant, measured in memory.items():
            label = "jwtgate" if variant == "default" else f"jwtgate, allocator: {variant}"
            last = measured[-1]
            out.append(f"| {label} | {mib(statistics.median(m[0] for m in measured))} | "
                       f"{mib(statistics.median(m[1] for m in measured))} | {mib(statistics.median(m[2] for m in measured))} | "
                       f"{last[3]} / {last[4]} | {mib(statistics.median(m[5] for m in measured))} |")

    if idle:
        counts = idle["counts"]
        out.append("")
        if plots.get("memory"):
            out += [f"![RSS against idle keep-alive connections]({MEMORY_SVG})", ""]
        out.append("| idle keep-alive connections, each after one request | " + " | ".join(f"{n:,}" for n in counts) + " | per connection |")
        out.append(("| --- | " + "---: | " * (len(counts) + 1)).rstrip())
        for server in idle["servers"]:
            rss = server["rss_kib"]
            per = (rss[-1] - rss[0]) / counts[-1]
            out.append(f"| {server['name']} | " + " | ".join(mib(k) for k in rss) + f" | {per:.1f} KiB |")
    return "\n".join(out) + "\n"


# --- SVG, by hand ---------------------------------------------------------

FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'


def colour(name):
    lower = name.lower()
    if lower.startswith("direct"):
        return "#9e9e9e"
    if lower.startswith("nginx"):
        return "#2e7d32"
    if lower.startswith("haproxy"):
        return "#ef6c00"
    return "#1565c0"


def nice_step(top, ticks=5):
    raw = top / ticks if top > 0 else 1
    power = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def text_width(text, size=12):
    return len(text) * size * 0.56


def svg_text(x, y, text, size=12, anchor="start", weight="normal", fill="#222"):
    return (f'<text x="{x:.1f}" y="{y:.1f}" {FONT} font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{fill}">{escape(text)}</text>')


def bar_panel(x0, y0, width, rows, value, title, fmt):
    """Horizontal bars of value(row) for rows, from x0, y0 (top of the panel)."""
    parts = [svg_text(x0, y0 - 8, title, 13, weight="bold")]
    values = [value(r) for r in rows]
    top = max((v for v in values if v is not None), default=1)
    step = nice_step(top)
    top = step * -(-top // step)
    scale = (width - 60) / top
    height = len(rows) * 24
    tick = 0.0
    while tick <= top + 1e-9:
        x = x0 + tick * scale
        parts.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + height}" stroke="#e0e0e0"/>')
        parts.append(svg_text(x, y0 + height + 14, fmt(tick), 10, "middle", fill="#666"))
        tick += step
    for i, (row, v) in enumerate(zip(rows, values)):
        y = y0 + i * 24 + 4
        if v is None:
            parts.append(svg_text(x0 + 4, y + 12, "—", 11, fill="#666"))
            continue
        parts.append(f'<rect x="{x0}" y="{y}" width="{v * scale:.1f}" height="16" fill="{colour(row["name"])}"/>')
        parts.append(svg_text(x0 + v * scale + 4, y + 12, fmt(v), 11))
    return parts


def load_svg(meta, rows):
    rows = list(rows.values())
    label_width = max(text_width(r["name"]) for r in rows) + 16
    panel = 300
    width = int(label_width + 2 * panel + 40)
    top = 74
    height = top + len(rows) * 24 + 40
    caption = caption_of(meta)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
             f'<rect width="{width}" height="{height}" fill="#fff"/>',
             svg_text(10, 20, "jwtgate load benchmark (benches/load.sh): medians of interleaved rounds", 14, weight="bold"),
             svg_text(10, 38, caption, 11, fill="#555")]
    for i, row in enumerate(rows):
        parts.append(svg_text(label_width - 8, top + i * 24 + 16, row["name"], 12, "end"))
    parts += bar_panel(label_width, top, panel, rows, lambda r: r["rps"], "requests/s", lambda v: f"{v / 1000:.0f}k" if v >= 1000 else f"{v:.0f}")
    parts += bar_panel(label_width + panel + 20, top, panel, rows, lambda r: r["cpu"], "proxy CPU µs per request",
                       lambda v: f"{v:.0f}" if v >= 10 or v == 0 else f"{v:.1f}")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def memory_svg(meta, idle):
    counts = idle["counts"]
    servers = idle["servers"]
    legend = max(text_width(f"{s['name']} (000.0 MiB)", 11) for s in servers)
    left, plot_w, top, bottom = 70, 440, 64, 50
    width, height = int(left + plot_w + 56 + legend), 400
    plot_h = height - top - bottom
    max_x = counts[-1]
    max_y = max(max(s["rss_kib"]) for s in servers) / 1024
    step = nice_step(max_y)
    max_y = step * -(-max_y // step)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
             f'<rect width="{width}" height="{height}" fill="#fff"/>',
             svg_text(10, 20, "RSS against idle keep-alive connections (benches/idle_memory.py)", 14, weight="bold"),
             svg_text(10, 38, caption_of(meta), 11, fill="#555")]

    def px(n, mib_):
        return left + n / max_x * plot_w, top + plot_h - mib_ / max_y * plot_h

    tick = 0.0
    while tick <= max_y + 1e-9:
        _, y = px(0, tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e0e0e0"/>')
        parts.append(svg_text(left - 6, y + 4, f"{tick:g}", 10, "end", fill="#666"))
        tick += step
    for n in counts:
        x, _ = px(n, 0)
        parts.append(f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}" stroke="#666"/>')
        parts.append(svg_text(x, top + plot_h + 16, f"{n:,}", 10, "middle", fill="#666"))
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#666"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#666"/>')
    parts.append(svg_text(left + plot_w / 2, height - 12, "idle keep-alive connections", 12, "middle"))
    parts.append(f'<text transform="translate(18 {top + plot_h / 2:.0f}) rotate(-90)" {FONT} font-size="12" '
                 f'text-anchor="middle" fill="#222">RSS, MiB</text>')
    palette = ["#1565c0", "#6a1b9a", "#00838f", "#c62828"]
    jwtgates = 0
    for i, server in enumerate(servers):
        if server["name"].lower().startswith("nginx"):
            stroke = "#2e7d32"
        else:
            stroke = palette[jwtgates % len(palette)]
            jwtgates += 1
        points = [px(n, k / 1024) for n, k in zip(counts, server["rss_kib"])]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{stroke}" stroke-width="2"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{stroke}"/>' for x, y in points]
        ly = top + 10 + i * 20
        parts.append(f'<line x1="{left + plot_w + 16}" y1="{ly}" x2="{left + plot_w + 36}" y2="{ly}" stroke="{stroke}" stroke-width="2"/>')
        end = server["rss_kib"][-1] / 1024
        parts.append(svg_text(left + plot_w + 42, ly + 4, f"{server['name']} ({end:.1f} MiB)", 11))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def caption_of(meta):
    dirty = "-dirty" if meta.get("dirty") == "yes" else ""
    features = f", --features {meta['features']}" if meta.get("features") else ""
    return (f"commit {meta.get('commit', '?')}{dirty}{features}, {meta.get('date', '?')}, "
            f"{meta.get('cores', '?')} cores, {meta.get('kernel', '?')}")


def publish(block, svgs):
    with open(DOC) as f:
        text = f.read()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise SystemExit(f"{DOC}: needs one line\n{BEGIN}\nand after it one line\n{END}")
    before, rest = text.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    with open(DOC, "w") as f:
        f.write(before + BEGIN + "\n\n" + block + "\n" + END + after)
    for name, svg in svgs.items():
        with open(os.path.join(ROOT, "docs", name), "w") as f:
            f.write(svg)
    print(f"published into {os.path.relpath(DOC, ROOT)} and " + ", ".join(f"docs/{n}" for n in svgs), file=sys.stderr)


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    meta, rows, latency, memory, idle = load(sys.argv[1], int(sys.argv[2]))
    publishing = "--publish" in sys.argv[3:]
    svgs = {}
    if publishing and rows:
        svgs[LOAD_SVG] = load_svg(meta, rows)
    if publishing and idle and idle["servers"]:
        svgs[MEMORY_SVG] = memory_svg(meta, idle)
    block = markdown(meta, rows, latency, memory, idle, {"load": LOAD_SVG in svgs, "memory": MEMORY_SVG in svgs})
    print(block)
    if publishing:
        publish(block, svgs)


if __name__ == "__main__":
    main()
