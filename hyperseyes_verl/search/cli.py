"""`hyperseyes index build|info`: build the embedded search index from a JSONL corpus and an image folder,
or print what an index holds."""
from __future__ import annotations

import argparse
import json
import sys
import time

from hyperseyes_verl.search.config import SearchConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="index_command", required=True)
    b = sub.add_parser("build", help="build an index folder (text BM25 + image fingerprints)")
    b.add_argument("--corpus", help="JSONL documents {id, title, text, url, image?}")
    b.add_argument("--images", help="folder of images for reverse image search")
    b.add_argument("--images-meta", help="images.jsonl {path, title, text, url, entity?}; default: every image, titled by file name")
    b.add_argument("--out", required=True, help="index folder to write (replaced atomically if it is an index)")
    b.add_argument("--no-progress", action="store_true", help="no progress bars")
    i = sub.add_parser("info", help="print an index's manifest and a load-time measurement")
    i.add_argument("index", help="index folder")
    i.add_argument("--query", help="also run this text query and print the hits")


def run(args: argparse.Namespace) -> int:
    from hyperseyes_verl.search.embedded import EmbeddedIndex, build_index

    try:
        if args.index_command == "build":
            if args.images_meta and not args.images:
                raise SearchConfigError("--images-meta needs --images (the folder its paths are relative to)")
            manifest = build_index(args.out, corpus=args.corpus, images_dir=args.images, images_meta=args.images_meta,
                                   progress=not args.no_progress)
            print(f"built {args.out}: {manifest['text_docs']} documents, {manifest['images']} images "
                  f"in {manifest['build_s']} s")
            return 0
        t0 = time.perf_counter()
        index = EmbeddedIndex(args.index)
        print(json.dumps({**index.manifest, "load_s": round(time.perf_counter() - t0, 3)}, indent=2))
        if args.query:
            if index.text is None:
                raise SearchConfigError(f"index {args.index!r} has no text corpus to query")
            hits = index.text.search(args.query, 5)
            for doc, score in hits:
                print(f"{score:.3f}  {doc.title}  {doc.url}")
            if not hits:
                print(f"no hits for {args.query!r} among {index.manifest.get('text_docs', '?')} documents (BM25 "
                      f"matches whole words of the corpus: try words from a document's title or text)")
        return 0
    except (ValueError, OSError) as e:  # SearchConfigError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
