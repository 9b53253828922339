from libs import lifecycle
from services.notifier import app

lifecycle.main("notifier", app.Settings, app.setup)
