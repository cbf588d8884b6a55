"""An inventory as an operator writes one: their own group names, hosts named apart from their addresses."""

k8s_workers = [
    ("worker-a", {"ssh_hostname": "10.0.0.11"}),
    ("worker-b", {"ssh_hostname": "10.0.0.12"}),
]
k8s_registry = [("mirror-1", {"ssh_hostname": "10.0.0.2"})]
