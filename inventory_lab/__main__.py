"""`python -m inventory_lab` works like the `inventory-lab` console script."""

from inventory_lab.cli import main

raise SystemExit(main())
