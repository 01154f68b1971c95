"""`python -m newsletter.testing.sendgrid_server --port 8025`"""

from newsletter.testing.sendgrid_server.process import main

main()
