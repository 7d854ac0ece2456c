"""The classic concurrent.futures page downloader, as a peer for `futurepool-bench fetch`.

Reads `NAME URL` lines, GETs every URL on a ThreadPoolExecutor and writes NAME.html — the example
from the Python documentation and countless tutorials. Uses requests when installed (as the
tutorials do), else urllib.

Usage: fetch.py LIST OUTDIR WORKERS
"""

import concurrent.futures
import os
import sys

try:
    import requests
except ImportError:  # pragma: no cover - depends on the machine
    requests = None
    import urllib.request


def load_url(url, timeout=60):
    if requests is not None:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        return response.content
    with urllib.request.urlopen(url, timeout=timeout) as conn:
        return conn.read()


def main():
    list_path, out_dir, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(list_path) as f:
        pages = [line.split() for line in f if line.strip()]
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as executor:
        future_to_name = {executor.submit(load_url, url): name for name, url in pages}
        for future in concurrent.futures.as_completed(future_to_name):
            name = future_to_name[future]
            try:
                data = future.result()
            except Exception as exc:  # noqa: BLE001 - the example reports and goes on
                print(f"{name} generated an exception: {exc}", file=sys.stderr)
                failed += 1
            else:
                with open(os.path.join(out_dir, name + ".html"), "wb") as out:
                    out.write(data)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
