"""`python -m icrl.ad train|evaluate|preset --help`."""

from ._cli import main

raise SystemExit(main())
