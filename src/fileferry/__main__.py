from fileferry.cli import main

main()
