from manifests.cli import main

main()
