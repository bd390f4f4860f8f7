from rosprompt_cli.commands import main

main()
