"""Summarise py-spy collapsed stacks (`bench/fanout.py --profile DIR`): where the samples go.

    python bench/profile_top.py DIR/gateway-*.txt [--top 30] [--under FUNC]

Prints, per function (file and name, line numbers dropped), the share of
samples in which it is on the stack (inclusive) and at the top (self). Idle
samples (the event loop waiting in epoll) are counted apart, so the shares are
of busy time. `--under FUNC` keeps only the stacks that pass through FUNC.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")
_IDLE = ("epoll_wait", "uv__io_poll")


def frames(stack: str) -> list[str]:
    return [_LINE.sub(")", f) for f in stack.split(";")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--under", help="only stacks through this function name")
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    busy = idle = 0
    for path in args.files:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            names = frames(stack)
            if any(n.startswith(_IDLE) for n in names[-3:]):
                idle += int(count)
                continue
            if args.under and not any(n.startswith(args.under + " ") for n in names):
                continue
            busy += int(count)
            own[names[-1]] += int(count)
            for name in set(names):
                inclusive[name] += int(count)
    print(
        f"busy samples: {busy}  idle samples: {idle}  busy share: {busy / max(1, busy + idle):.1%}"
    )
    print(f"\n{'incl %':>7} {'self %':>7}  function")
    for name, n in inclusive.most_common(args.top):
        print(f"{n / busy:7.1%} {own[name] / busy:7.1%}  {name}")
    print(f"\n{'self %':>7}  function (top by self)")
    for name, n in own.most_common(args.top):
        print(f"{n / busy:7.1%}  {name}")


if __name__ == "__main__":
    main()
