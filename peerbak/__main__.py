from peerbak.cli.main import main

main()
