def test_nurse_signs_in_and_sees_dashboard(login_as):
    client, _ = login_as("nurse")
    page = client.get("/")
    assert page.status_code == 200
    assert "Dashboard" in page.get_data(as_text=True)


def test_admin_signs_in_with_totp(login_as):
    client, _ = login_as("admin")
    assert client.get("/admin/users").status_code == 200
