from ossgate.cli import main

main()
