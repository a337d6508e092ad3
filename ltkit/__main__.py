from ltkit.cli import main

raise SystemExit(main())
