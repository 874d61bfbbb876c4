from kstream_lab.cli import main

main()
