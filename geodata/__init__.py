"""gridmap: grid service management (网格化服务管理) for industrial parks, without Flask."""
