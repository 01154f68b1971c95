"""The whole file: every table in the order `init` writes them, each optional."""

from __future__ import annotations

from pydantic import Field

from newsletter.settings.schema.base import Section
from newsletter.settings.schema.editorial import (
    ArticlesSection,
    CheckSection,
    EditorSection,
    IssueSection,
    NewsletterSection,
    ScheduleSection,
)
from newsletter.settings.schema.mail import BouncesSection, DkimSection, SMTPSection
from newsletter.settings.schema.sending import (
    DeliverySection,
    OutboxSection,
    SendGridSection,
    SendingSection,
)
from newsletter.settings.schema.web import WebSection
from newsletter.settings.schema.workflow import FeedSection, WelcomeSection


class SettingsFile(Section):
    """The whole file. Every table is optional; a missing key takes the default above."""

    newsletter: NewsletterSection = NewsletterSection()
    editor: EditorSection = EditorSection()
    schedule: ScheduleSection = ScheduleSection()
    delivery: DeliverySection = DeliverySection()
    check: CheckSection = CheckSection()
    issue: IssueSection = IssueSection()
    articles: ArticlesSection = ArticlesSection()
    outbox: OutboxSection = OutboxSection()
    sendgrid: SendGridSection = SendGridSection()
    dkim: DkimSection = DkimSection()
    smtp: SMTPSection = SMTPSection()
    bounces: BouncesSection = BouncesSection()
    sending: SendingSection = SendingSection()
    web: WebSection = WebSection()
    welcome: WelcomeSection = WelcomeSection()
    feeds: tuple[FeedSection, ...] = Field((), strict=False)  # last: the commented example
