SELECT id, name, description, icon, rarity FROM badges WHERE id = :badge_id
