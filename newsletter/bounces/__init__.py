"""Bounces and complaints read from the bounce mailbox (`parse`: what one message reports;
`mailboxes`: Maildir, mbox and IMAP). Applying them to the subscriber list comes with the
`newsletter bounces` command (issue 20, not built yet)."""
