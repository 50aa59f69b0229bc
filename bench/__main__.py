"""``python -m bench``: the step benchmark (bench/run.py); ``python -m bench e2e``: whole
epochs end to end (bench/e2e.py). See bench/README.md."""

import sys

if sys.argv[1:2] == ["e2e"]:
    from bench.e2e import main

    raise SystemExit(main(sys.argv[2:]))

from bench.run import main  # noqa: E402

raise SystemExit(main())
