"""Wait until every URL given answers HTTP 200 (used by `make services`); exit 1 after a timeout."""

import sys
import time
import urllib.request

TIMEOUT_S = 180


def main(urls: list[str]) -> int:
    deadline = time.monotonic() + TIMEOUT_S
    pending = list(urls)
    while pending and time.monotonic() < deadline:
        for url in list(pending):
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    if resp.status == 200:
                        print(f"healthy: {url}")
                        pending.remove(url)
            except OSError:
                pass
        if pending:
            time.sleep(1)
    for url in pending:
        print(f"not healthy after {TIMEOUT_S}s: {url} (see .services/*.log)", file=sys.stderr)
    return 1 if pending else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
