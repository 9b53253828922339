from libs import lifecycle
from services.traffic_shifter import app

lifecycle.main("traffic-shifter", app.Settings, app.setup)
