"""Drives tuspy, a stock tus client (PyPI `tuspy`), for the end-to-end tests
(tests/e2e/files.rs): uploads a file to a tus endpoint, or resumes an
upload at URL from the offset the server reports.

    python tus_client.py ENDPOINT TOKEN PATH [--chunk N] [--url URL] [--checksum]

Prints one JSON line: {"url", "offset"} and, if the upload broke off,
"error" (exit status 3).
"""
import argparse
import json
import os
import sys

from tusclient import client


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("endpoint")
    parser.add_argument("token")
    parser.add_argument("path")
    parser.add_argument("--chunk", type=int, default=1 << 20)
    parser.add_argument("--url", help="resume this upload")
    parser.add_argument("--checksum", action="store_true", help="send Upload-Checksum (sha1)")
    args = parser.parse_args()
    tus = client.TusClient(args.endpoint, headers={"Authorization": f"Bearer {args.token}"})
    uploader = tus.uploader(
        args.path,
        chunk_size=args.chunk,
        metadata={"filename": os.path.basename(args.path), "filetype": "application/octet-stream"},
        url=args.url,
        upload_checksum=args.checksum,
    )
    try:
        uploader.upload()
    except Exception as error:  # tuspy raises its own errors and requests'
        print(json.dumps({"url": uploader.url, "offset": uploader.offset, "error": str(error)}))
        sys.exit(3)
    print(json.dumps({"url": uploader.url, "offset": uploader.offset}))


if __name__ == "__main__":
    main()
