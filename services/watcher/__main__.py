from libs import lifecycle
from services.watcher import app

lifecycle.main("watcher", app.Settings, app.setup)
