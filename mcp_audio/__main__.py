from mcp_audio.cli import main

raise SystemExit(main())
