"""The KCL side: the MultiLangDaemon launcher, its properties, and the record processor."""
