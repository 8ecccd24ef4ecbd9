"""The speed targets, each quoted next to the figure this run measured for it."""

from __future__ import annotations

from .figures import markdown_table
from .processes import MPC_NET
from .transport import per_rep

# Speed targets, quoted next to the figures.
TARGET_MEDIAN_DEMO_RATIO = 1.1
TARGET_MAX_DEMO_RATIO = 1.5
TARGET_PINGPONG_VS_UDP = 2.0
TARGET_THROUGHPUT_MB_S = 50.0
TARGET_CONNECT_M8_S = 0.3
TARGET_MEMORY_PER_CONNECTION_MB = 5.0


def targets(demos: dict, transport: dict) -> list[dict]:
    """Each speed target with the measured figure, where this run measured it."""
    out = []

    def add(name: str, goal: str, value: float | None, met: bool | None, unit: str) -> None:
        out.append({"target": name, "goal": goal, "measured": value, "unit": unit, "met": met})

    for key, which in ((None, "all demos"), ("long", "demos not (short)")):
        d = demos.get(key) if key else demos
        if d:
            add(f"median demo elapsed ratio, {which}", f"<= {TARGET_MEDIAN_DEMO_RATIO}",
                d["median_ratio"], d["median_ratio"] <= TARGET_MEDIAN_DEMO_RATIO, "x")
            add(f"largest demo elapsed ratio, {which} ({d['max_ratio_at']})",
                f"<= {TARGET_MAX_DEMO_RATIO}", d["max_ratio"],
                d["max_ratio"] <= TARGET_MAX_DEMO_RATIO, "x")
    pp = transport.get("pingpong", {})
    if "rtc" in pp and "udp" in pp:
        vs_udp = per_rep(pp, "rtc", "udp", "rtt_us")
        if vs_udp:
            add("ping-pong vs raw UDP", f"<= {TARGET_PINGPONG_VS_UDP}", vs_udp["median"],
                vs_udp["median"] <= TARGET_PINGPONG_VS_UDP, "x")
    for test in ("stream-1k", "stream-64k"):
        value = transport.get(test, {}).get("rtc", {}).get("median", {}).get("mb_per_s")
        if value is not None:
            add(f"throughput per channel ({test})", f">= {TARGET_THROUGHPUT_MB_S}", value,
                value >= TARGET_THROUGHPUT_MB_S, "MB/s")
    value = transport.get("connect-8", {}).get(MPC_NET, {}).get("median", {}).get(
        "after_last_start_s")
    if value is not None:
        add("m = 8 connected (after the last party started)", f"<= {TARGET_CONNECT_M8_S}",
            value, value <= TARGET_CONNECT_M8_S, "s")
    value = transport.get("memory", {}).get("rtc", {}).get("median", {}).get(
        "bytes_per_peer_connection")
    if value is not None:
        add("memory per peer connection", f"<= {TARGET_MEMORY_PER_CONNECTION_MB}", value / 1e6,
            value / 1e6 <= TARGET_MEMORY_PER_CONNECTION_MB, "MB")
    return out


def targets_table(rows: list[dict]) -> str:
    return markdown_table(["target", "goal", "measured", "met"], [
        [r["target"], f"{r['goal']} {r['unit']}", f"{r['measured']:.3g} {r['unit']}",
         "yes" if r["met"] else "no"] for r in rows])

