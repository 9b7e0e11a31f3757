from backends.taskworker.cli import main

main()
