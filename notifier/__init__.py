"""The notifier: follows the alerts topic and tells people (e-mail, webhooks, chat) about the changes that matter."""
