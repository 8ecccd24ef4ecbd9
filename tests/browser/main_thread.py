"""Where a page's main thread (where Python runs) spends its time per data channel message it
receives, from Chromium's trace events: for `measure.py --ping-pong --trace`.

The trace names each task the main thread runs by where it was posted from: "OnMessage" a data
channel's message event (the listener entering Python), "PostDispatchNextMessageFromPipe" a
message on a MessagePort (how Pyodide's loop schedules a callback, and how `callPromising`
enters Python), "ScheduledActionSendBeginMainFrame" a frame (style, layout, paint). Inside
them: "RunMicrotasks" (Python entered through `callPromising` runs in a microtask),
"DataChannelProxy::*" (`send()` handing a message to WebRTC's network thread), and the
lifecycle phases of frames. Tracing costs time of its own: compare kinds, not absolute times.
"""

from __future__ import annotations

import collections
import json

# Chromium's trace categories: tasks, their sources, V8's entries, Blink's frames, WebRTC.
CATEGORIES = ["toplevel", "devtools.timeline", "v8.execute", "blink", "webrtc",
              "disabled-by-default-devtools.timeline"]
TASK = "ThreadControllerImpl::RunTask"
MESSAGE = "OnMessage"
KINDS = {MESSAGE: "data channel message event",
         "PostDispatchNextMessageFromPipe": "MessagePort message (loop callbacks)",
         "ScheduledActionSendBeginMainFrame": "frame (style, layout, paint)"}
INSIDE = ("RunMicrotasks", "DataChannelProxy::SendAsync", "DataChannelProxy::reliable",
          "SerializedScriptValueFactory::create", "FunctionCall",
          "WebFrameWidgetImpl::UpdateLifecycle", "EventHandler::handleMouseMoveEvent")


def per_message(trace: bytes) -> list[str]:
    """Lines of a table: per message received by the busiest renderer main thread, between
    the 20th and the 95th percentile of its messages (the steady ping-pong), what it ran."""
    data = json.loads(trace)
    events = data["traceEvents"] if isinstance(data, dict) else data
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
               if e.get("ph") == "M" and e.get("name") == "thread_name"}
    busy: collections.Counter = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e.get("name") == TASK:
            busy[e["pid"], e["tid"]] += e.get("dur", 0)
    main = max((t for t in busy if threads.get(t) == "CrRendererMain"), key=busy.__getitem__)
    ours = [e for e in events if (e.get("pid"), e.get("tid")) == main and e.get("ph") == "X"]
    tasks = [e for e in ours if e["name"] == TASK]
    arrivals = sorted(e["ts"] for e in tasks if _source(e) == MESSAGE)
    start, end = arrivals[len(arrivals) // 5], arrivals[len(arrivals) * 19 // 20]
    tasks = [e for e in tasks if start <= e["ts"] < end]
    inner = [e for e in ours if start <= e["ts"] < end and e["name"] != TASK]
    messages = sum(1 for e in tasks if _source(e) == MESSAGE)
    total = sum(e["dur"] for e in tasks)
    lines = [f"{messages} messages received in {(end - start) / 1e3:.0f} ms: "
             f"{(end - start) / messages / 1e3:.2f} ms apart, the main thread busy "
             f"{total / messages / 1e3:.2f} ms per message ({total / (end - start):.0%})",
             "  tasks per message     us per message  us each  task (posted from)"]
    by_source: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for e in tasks:
        by_source[_source(e)][0] += 1
        by_source[_source(e)][1] += e["dur"]
    for source, (count, micros) in sorted(by_source.items(), key=lambda kv: -kv[1][1])[:8]:
        lines.append(f"  {count / messages:17.2f}  {micros / messages:17.0f}  "
                     f"{micros / count:7.0f}  {KINDS.get(source, source)[:60]}")
    lines.append("  inside them, per message:")
    for name in INSIDE:
        spans = [e.get("dur", 0) for e in inner if e["name"] == name]
        if spans:
            lines.append(f"  {len(spans) / messages:17.2f}  {sum(spans) / messages:17.0f}  "
                         f"{sum(spans) / len(spans):7.0f}  {name}")
    return lines


def _source(task: dict) -> str:
    return task.get("args", {}).get("src_func", "?")
