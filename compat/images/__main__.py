from compat.images.build import main

raise SystemExit(main())
