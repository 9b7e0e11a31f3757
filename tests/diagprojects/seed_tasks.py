# The seed page's "Defining Tasks" snippet, copied as users copy it.
from django.contrib.tasks import task


@task()
def send_email(email_address, message):
    from django.core.mail import send_mail

    send_mail("Subject", message, "from@example.com", [email_address])


# Enqueue
send_email.delay("user@example.com", "Hello!")
