"""The Faust application: app object, topics, web views, command line, local broker."""
