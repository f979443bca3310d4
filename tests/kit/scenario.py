"""The queries of field report 1 (../shared/docs/scenario.md §1, step 1): what an EC2 instance
sending one mail to Gmail and one to Yahoo! JAPAN asked its resolver (28 names, 46 name and
type pairs), as the trial's query log holds them."""

from __future__ import annotations

# scenario.md §1 step 1: 28 names, 46 (name, type) pairs
SCENARIO: dict[str, tuple[str, ...]] = {
    "__cloud_init_expected_not_found__.": ("A", "AAAA"),
    "__cloud_init_expected_not_found__.ap-northeast-1.compute.internal.": ("A", "AAAA"),
    "0.amazon.pool.ntp.org.": ("A", "AAAA"),
    "1.amazon.pool.ntp.org.": ("A", "AAAA"),
    "2.amazon.pool.ntp.org.": ("A", "AAAA"),
    "2.amazon.pool.ntp.org.ap-northeast-1.compute.internal.": ("A", "AAAA"),
    "gmail.com.": ("A", "MX"),
    "gmail-smtp-in.l.google.com.": ("A",),
    "alt1.gmail-smtp-in.l.google.com.": ("A",),
    "alt2.gmail-smtp-in.l.google.com.": ("A",),
    "alt3.gmail-smtp-in.l.google.com.": ("A",),
    "alt4.gmail-smtp-in.l.google.com.": ("A",),
    "yahoo.co.jp.": ("MX",),
    "mx1.mail.yahoo.co.jp.": ("A",),
    "mx2.mail.yahoo.co.jp.": ("A",),
    "mx3.mail.yahoo.co.jp.": ("A",),
    "mx5.mail.yahoo.co.jp.": ("A",),
    "amazonlinux-2-repos-ap-northeast-1.s3.dualstack.ap-northeast-1.amazonaws.com.": ("A", "AAAA"),
    "mirrors.fedoraproject.org.": ("A", "AAAA"),
    "ssm.ap-northeast-1.amazonaws.com.": ("A", "AAAA"),
    "ssmmessages.ap-northeast-1.amazonaws.com.": ("A", "AAAA"),
    "ec2messages.ap-northeast-1.amazonaws.com.": ("A", "AAAA"),
    "logs.ap-northeast-1.amazonaws.com.": ("A", "AAAA"),
    "instance-data.": ("A", "AAAA"),
    "ip-10-0-0-150.ap-northeast-1.compute.internal.": ("A", "AAAA"),
    "ip-10-0-0-150.ap-northeast-1.compute.internal.ap-northeast-1.compute.internal.": ("A", "AAAA"),
    "does-not-exist.example.com.": ("A", "AAAA"),
    "example.invalid.": ("A", "AAAA"),
}
