"""The officer's desk: `liaison desk`, a local web app served by the officer's own process.

The keys are unlocked in this process, as for any CLI command; the browser gets only
what an officer reads (verified, checked, decrypted here) and sends only forms (sealed
here). ``security`` is the door (token, cookie, Host, Origin, CSRF, CSP), ``officer`` what
the desk does with the client library, ``api`` the JSON routes, ``server`` assembles them
and runs the live updates. docs/desk.md explains the screens and the security model.
"""
