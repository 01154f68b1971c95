"""Bounces and complaints read from the bounce mailbox: `parse` (what one message reports),
`mailboxes` (Maildir, mbox and IMAP), `apply` (each message applied to the list once, for
`newsletter bounces` and the scheduler)."""
