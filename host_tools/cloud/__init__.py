"""The service side of the cloud link: the update server and announcements (updateserver),
staged rollouts (rollout), the fleet monitor (monitor) and certificate renewal (renewal)."""
