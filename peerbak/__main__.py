from peerbak.cli import main

main()
