from ladd.cli import main

main()
