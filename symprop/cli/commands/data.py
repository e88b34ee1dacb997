"""symprop data mnist|fashion-mnist [--dir DIR] [--mirror URL]: download a data set's IDX files
into the data cache (checked by SHA-256), where symprop train --data NAME finds them."""
from __future__ import annotations

from symprop.training.download import SOURCES, download, where_to_get

def add_arguments(parser):
    parser.epilog = ("The files go to $SYMPROP_DATA/NAME if that variable is set, else to the user's "
                     "cache folder ($XDG_CACHE_HOME or ~/.cache)/symprop/data/NAME.")
    parser.add_argument("name", choices=tuple(SOURCES), help="the data set: mnist (handwritten digits) or "
                        "fashion-mnist (clothing images, the same file format)")
    parser.add_argument("--dir", metavar="DIR", help="write the files here instead of the data cache "
                        "(then train with --data-dir DIR)")
    parser.add_argument("--mirror", metavar="URL", action="append",
                        help="download from this base URL instead of the usual mirrors (may be given more "
                             "than once; tried in order)")
    parser.add_argument("--where", action="store_true",
                        help="only print where the files go, their names and SHA-256 checksums")

def run(args) -> int:
    if args.where:
        print(where_to_get(args.name))
        return 0
    folder = download(args.name, args.dir, tuple(args.mirror) if args.mirror else None)
    print(f"{SOURCES[args.name].title}: ready in {folder}")
    return 0
