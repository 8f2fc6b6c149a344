from fusion.cli import main

main()
