from luma_mcp.simulator.app import main

main()
