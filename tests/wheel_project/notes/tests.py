from django_tenants.test.cases import TenantTestCase
from django_tenants.test.client import TenantClient

from notes.models import Note


class NoteListTest(TenantTestCase):
    @classmethod
    def setup_tenant(cls, tenant):
        tenant.name = "Test tenant"

    def setUp(self):
        super().setUp()
        self.client = TenantClient(self.tenant)

    def test_the_view_lists_the_tenants_notes(self):
        Note.objects.create(text="written in the test")
        response = self.client.get("/notes/")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"schema": "test", "notes": ["written in the test"]})
