from libs import lifecycle
from services.webhook_runner import app

lifecycle.main("webhook-runner", app.Settings, app.setup)
